"""A second opinion for the federated SQL tests: runs queries with DuckDB over CSV files.

Reads one JSON document on stdin, {"tables": {"name": "file.csv", ...}, "queries": ["SQL", ...],
"types": {"column": "DUCKDB TYPE", ...}}, loads each CSV as a table (the named columns with the
given types, every other one as DuckDB detects it) and prints one JSON array on stdout, for each
query either {"columns": [...], "rows": [{column: value}, ...]} or {"error": "..."}. Values are
JSON as the node renders them: timestamps as RFC 3339 in UTC, dates as YYYY-MM-DD, decimals and
128-bit integers as numbers.
"""

import datetime
import decimal
import json
import sys

import duckdb


def value(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat() + "Z"
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() and v.as_tuple().exponent >= 0 else float(v)
    if isinstance(v, (list, tuple)):
        return [value(x) for x in v]
    return v


def main():
    doc = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    types = doc.get("types", {})
    for name, path in doc["tables"].items():
        header = open(path, encoding="utf-8").readline().strip().split(",")
        given = {c: types[c] for c in header if c in types}
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, header = true, types = ?)",
            [path, given],
        )
    out = []
    for sql in doc["queries"]:
        try:
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description]
            rows = [dict(zip(columns, (value(v) for v in row))) for row in cur.fetchall()]
            out.append({"columns": columns, "rows": rows})
        except duckdb.Error as e:
            out.append({"error": str(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
