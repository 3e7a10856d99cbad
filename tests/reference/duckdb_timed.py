"""DuckDB beside a federated query (the scan case, scenarios/src/federation/scan.rs): one JSON
request per line on stdin, one JSON answer per line on stdout.

The first request names the tables, {"tables": {"name": ["file.parquet", ...]}, "threads": N}:
each becomes a view over its Parquet files, read again by every query, as the nodes read their
own files. Each later request, {"sql": "..."}, is answered {"ms": <DuckDB's time for the query,
fetching every row>, "rows": [{column: value}]}, or {"error": "..."}. Timestamps are rendered
as ISO 8601 with a `Z`, decimals and 128-bit integers as numbers.
"""

import json
import sys
import time

import duckdb

# The same rendering of values as the dialect tests' reference (this script's directory is on
# the path when it runs).
from duckdb_sql import value


def main():
    con = duckdb.connect()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "tables" in request:
                con.execute(f"SET threads = {int(request.get('threads', 2))}")
                for name, files in request["tables"].items():
                    # A view takes no prepared parameters: the file names as SQL literals.
                    paths = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
                answer = {"ok": True}
            else:
                start = time.perf_counter()
                cur = con.execute(request["sql"])
                rows = cur.fetchall()
                took = (time.perf_counter() - start) * 1000.0
                columns = [d[0] for d in cur.description]
                answer = {
                    "ms": took,
                    "rows": [dict(zip(columns, (value(v) for v in row))) for row in rows],
                }
        except duckdb.Error as e:
            answer = {"error": str(e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
