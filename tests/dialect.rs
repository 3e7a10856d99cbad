//! The federated SQL correctness suite: three real node processes, each holding two days of
//! hourly air-quality readings under an open policy, and more than forty queries that use every
//! construct of DataFusion's dialect a researcher reaches for (expressions anywhere, every kind of
//! aggregate, subqueries, CTEs, set operations, windows, joins of every kind between federated
//! tables, between members and with the asking node's own table). Each federated answer must
//! equal, row by row in order, with the same JSON types and NULLs, the same SQL run by DataFusion
//! (the asking node's local SQL) over the union of the members' data, and, as a second opinion,
//! by DuckDB over the same CSV files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use allmende_e2e::{air_city as city, allmende, federate, path, poll};
use serde_json::{Value, json};

const MEMBERS: [&str; 3] = ["moenchengladbach", "muenster", "wuerzburg"];

/// The queries, each with a total order (so that answers compare row by row). `F` is the
/// federation's view; `<member>.air` a member's dataset; `cities` the asker's own table.
const QUERIES: &[&str] = &[
    // Aggregates and expressions anywhere.
    "SELECT count(*) AS n FROM F",
    "SELECT _member, count(*) AS n, sum(no2_ugm3) AS s, min(pm10_ugm3) AS lo, \
     max(no2_ugm3) AS hi, avg(pm10_ugm3) AS mean FROM F GROUP BY _member ORDER BY _member",
    "SELECT station, timestamp, no2_ugm3 * 1.5 + pm10_ugm3 AS score FROM F \
     WHERE no2_ugm3 > 35 AND (pm10_ugm3 < 20 OR station LIKE '%L01') ORDER BY station, timestamp",
    "SELECT date_trunc('day', timestamp) AS day, count(*) AS n, avg(no2_ugm3) AS mean FROM F \
     GROUP BY 1 ORDER BY 1",
    "SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) AS h, max(no2_ugm3) AS hi FROM F \
     GROUP BY 1 ORDER BY 1",
    "SELECT CASE WHEN no2_ugm3 >= 40 THEN 'high' WHEN no2_ugm3 >= 20 THEN 'mid' ELSE 'low' END \
     AS level, count(*) AS n FROM F GROUP BY 1 ORDER BY 1",
    "SELECT CAST(timestamp AS DATE) AS d, _member, sum(pm10_ugm3) AS s FROM F GROUP BY 1, 2 \
     ORDER BY 1, 2",
    "SELECT station, avg(no2_ugm3) AS mean FROM F GROUP BY station \
     HAVING avg(no2_ugm3) > 25 AND count(*) >= 10 ORDER BY mean DESC, station",
    "SELECT station, timestamp, no2_ugm3 FROM F ORDER BY abs(no2_ugm3 - 30), station, timestamp \
     LIMIT 15",
    "SELECT station FROM F GROUP BY station ORDER BY max(no2_ugm3) DESC, station LIMIT 5",
    "SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) % 6 AS slot, count(*) AS n FROM F \
     GROUP BY 1 ORDER BY 1",
    // Every kind of aggregate: DISTINCT, FILTER, over expressions, statistics, ordered.
    "SELECT _member, count(DISTINCT station) AS stations, \
     count(DISTINCT CAST(timestamp AS DATE)) AS days FROM F GROUP BY _member ORDER BY _member",
    "SELECT _member, count(*) FILTER (WHERE no2_ugm3 > 40) AS high, \
     avg(pm10_ugm3) FILTER (WHERE station LIKE '%L02') AS l2 FROM F GROUP BY _member \
     ORDER BY _member",
    "SELECT _member, sum(CASE WHEN no2_ugm3 > 30 THEN no2_ugm3 ELSE 0 END) AS s, \
     avg(COALESCE(pm10_ugm3, 0)) AS a FROM F GROUP BY _member ORDER BY _member",
    "SELECT _member, stddev_samp(no2_ugm3) AS sd, var_pop(pm10_ugm3) AS v, \
     corr(no2_ugm3, pm10_ugm3) AS r FROM F GROUP BY _member ORDER BY _member",
    "SELECT station, median(no2_ugm3) AS med FROM F GROUP BY station ORDER BY station",
    "SELECT _member, bool_and(no2_ugm3 > 5) AS all_above, bool_or(pm10_ugm3 > 45) AS any_high \
     FROM F GROUP BY _member ORDER BY _member",
    "SELECT m, string_agg(station, ',' ORDER BY station) AS stations \
     FROM (SELECT DISTINCT _member AS m, station FROM F) t GROUP BY m ORDER BY m",
    "SELECT station, floor(avg(no2_ugm3)) AS fl, ceil(max(pm10_ugm3)) AS ce, \
     sqrt(sum(power(no2_ugm3, 2))) AS norm, abs(min(no2_ugm3) - max(no2_ugm3)) AS span \
     FROM F GROUP BY station ORDER BY station",
    // Literals, functions and NULLs in filters and results.
    "SELECT _member, count(*) AS n FROM F WHERE timestamp >= TIMESTAMP '2024-01-01 12:00:00' \
     AND timestamp < TIMESTAMP '2024-01-01 12:00:00' + INTERVAL '6 hours' GROUP BY _member \
     ORDER BY _member",
    "SELECT _member, max(no2_ugm3) AS hi FROM F WHERE upper(substr(station, 7, 1)) = 'L' \
     AND date_part('hour', timestamp) BETWEEN 8 AND 17 GROUP BY _member ORDER BY _member",
    "SELECT station, count(*) AS n FROM F WHERE station IN ('05515-L01', '09663-L02', \
     '05116-L03') AND pm10_ugm3 IS NOT NULL GROUP BY station ORDER BY station",
    "SELECT _member, station, NULLIF(station, '05515-L01') AS s2, \
     CASE WHEN no2_ugm3 > 30 THEN no2_ugm3 END AS peak FROM F \
     WHERE timestamp = TIMESTAMP '2024-01-01 08:00:00' ORDER BY _member, station",
    "SELECT station, count(CASE WHEN no2_ugm3 > 40 THEN 1 END) AS high, \
     max(CASE WHEN no2_ugm3 > 48 THEN no2_ugm3 END) AS top FROM F GROUP BY station \
     ORDER BY top NULLS FIRST, station",
    "SELECT count(*) AS n FROM F WHERE NULLIF(station, '05515-L01') IS DISTINCT FROM station",
    "SELECT DISTINCT _member || ':' || lower(station) AS tag, length(station) AS len FROM F \
     ORDER BY tag",
    "SELECT station, timestamp, greatest(no2_ugm3, pm10_ugm3) AS g, \
     least(no2_ugm3, pm10_ugm3) AS l FROM moenchengladbach.air \
     WHERE timestamp < TIMESTAMP '2024-01-01 03:00:00' ORDER BY station, timestamp",
    "SELECT DISTINCT station FROM F ORDER BY station LIMIT 4 OFFSET 2",
    "SELECT DISTINCT ON (station) station, timestamp, no2_ugm3 FROM F \
     ORDER BY station, no2_ugm3 DESC, timestamp",
    "SELECT _member, CAST(timestamp AS DATE) AS d, count(*) AS n FROM F \
     GROUP BY ROLLUP(_member, CAST(timestamp AS DATE)) ORDER BY _member NULLS LAST, d NULLS LAST",
    // Subqueries: in FROM, scalar, correlated, IN, EXISTS; CTEs.
    "SELECT level, count(*) AS stations FROM (SELECT station, \
     CASE WHEN avg(no2_ugm3) > 25 THEN 'high' ELSE 'low' END AS level FROM F GROUP BY station) s \
     GROUP BY level ORDER BY level",
    "SELECT station, timestamp, no2_ugm3 FROM F WHERE no2_ugm3 > \
     (SELECT avg(no2_ugm3) + 1.5 * stddev_samp(no2_ugm3) FROM F) ORDER BY station, timestamp",
    "SELECT f.station, f.timestamp, f.no2_ugm3 FROM F f WHERE f.no2_ugm3 = \
     (SELECT max(g.no2_ugm3) FROM F g WHERE g.station = f.station) ORDER BY f.station, f.timestamp",
    "SELECT _member, count(*) AS n FROM F WHERE station IN \
     (SELECT station FROM F WHERE pm10_ugm3 > 40) GROUP BY _member ORDER BY _member",
    "SELECT c.member, c.name FROM cities c WHERE EXISTS \
     (SELECT 1 FROM F f WHERE f._member = c.member AND f.no2_ugm3 > 45) ORDER BY c.member",
    "SELECT DISTINCT station FROM F f WHERE NOT EXISTS \
     (SELECT 1 FROM F g WHERE g.station = f.station AND g.pm10_ugm3 > 40) ORDER BY station",
    "WITH daily AS (SELECT _member AS m, CAST(timestamp AS DATE) AS d, avg(no2_ugm3) AS mean \
     FROM F GROUP BY 1, 2) SELECT m, max(mean) - min(mean) AS spread FROM daily GROUP BY m \
     ORDER BY m",
    // Set operations between members.
    "SELECT 'ms' AS src, count(*) AS n FROM muenster.air UNION ALL \
     SELECT 'wue', count(*) FROM wuerzburg.air ORDER BY src",
    "SELECT station FROM muenster.air WHERE no2_ugm3 > 40 UNION \
     SELECT station FROM moenchengladbach.air WHERE no2_ugm3 > 40 ORDER BY station",
    "SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) AS h FROM muenster.air \
     WHERE no2_ugm3 > 30 INTERSECT SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) \
     FROM wuerzburg.air WHERE no2_ugm3 > 30 ORDER BY h",
    "SELECT timestamp FROM muenster.air WHERE pm10_ugm3 > 25 EXCEPT \
     SELECT timestamp FROM moenchengladbach.air WHERE pm10_ugm3 > 25 ORDER BY 1",
    // Window functions.
    "SELECT * FROM (SELECT _member, station, timestamp, no2_ugm3, row_number() OVER \
     (PARTITION BY _member ORDER BY no2_ugm3 DESC, station, timestamp) AS r FROM F) t \
     WHERE r <= 3 ORDER BY _member, r",
    "SELECT station, timestamp, no2_ugm3 - lag(no2_ugm3) OVER (PARTITION BY station \
     ORDER BY timestamp) AS delta, lead(pm10_ugm3, 2) OVER (PARTITION BY station \
     ORDER BY timestamp) AS ahead FROM muenster.air ORDER BY station, timestamp LIMIT 30",
    "SELECT station, timestamp, avg(no2_ugm3) OVER (PARTITION BY station ORDER BY timestamp \
     ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS ma FROM wuerzburg.air \
     ORDER BY station, timestamp",
    "SELECT _member, CAST(timestamp AS DATE) AS d, sum(no2_ugm3) AS s, \
     sum(sum(no2_ugm3)) OVER (PARTITION BY _member ORDER BY CAST(timestamp AS DATE)) AS running \
     FROM F GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT station, avg(no2_ugm3) AS mean, ntile(3) OVER (ORDER BY avg(no2_ugm3), station) \
     AS tercile, first_value(station) OVER (ORDER BY avg(no2_ugm3) DESC, station) AS top \
     FROM F GROUP BY station ORDER BY station",
    // Joins: with the asker's own table, between members, of the view with itself, outer.
    "SELECT c.name, count(*) AS n, sum(f.no2_ugm3) / c.population * 100000 AS per_100k \
     FROM F f JOIN cities c ON f._member = c.member GROUP BY c.name, c.population \
     ORDER BY c.name",
    "SELECT m.timestamp, m.no2_ugm3 - w.no2_ugm3 AS diff FROM muenster.air m \
     JOIN wuerzburg.air w ON m.timestamp = w.timestamp \
     AND substr(m.station, 7) = substr(w.station, 7) WHERE m.station LIKE '%L01' \
     ORDER BY m.timestamp",
    "SELECT a._member, count(*) AS pairs FROM F a JOIN F b ON a.timestamp = b.timestamp \
     AND a._member < b._member AND a.station < b.station GROUP BY a._member ORDER BY a._member",
    "SELECT c.member, c.name, count(f.station) AS high FROM cities c LEFT JOIN \
     (SELECT _member, station FROM F WHERE no2_ugm3 > 45) f ON f._member = c.member \
     GROUP BY c.member, c.name ORDER BY c.member",
    "SELECT coalesce(a.h, b.h) AS h, a.n AS ms, b.n AS wue FROM \
     (SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) AS h, count(*) AS n \
     FROM muenster.air WHERE no2_ugm3 > 30 GROUP BY 1) a FULL JOIN \
     (SELECT CAST(EXTRACT(HOUR FROM timestamp) AS BIGINT) AS h, count(*) AS n \
     FROM wuerzburg.air WHERE no2_ugm3 > 30 GROUP BY 1) b ON a.h = b.h ORDER BY h",
    "SELECT c.member, f.n FROM (SELECT _member, count(*) AS n FROM F GROUP BY _member) f \
     RIGHT JOIN cities c ON f._member = c.member ORDER BY c.member",
    "SELECT c.name, s.n FROM cities c CROSS JOIN (SELECT count(DISTINCT station) AS n FROM F) s \
     ORDER BY c.name",
];

/// `sql` with the view `F` named `table`.
fn naming(sql: &str, table: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::new();
    for (i, c) in sql.char_indices() {
        let alone = c == 'F'
            && i > 0
            && b[i - 1] == b' '
            && b.get(i + 1).is_none_or(|n| matches!(n, b' ' | b')'));
        match alone {
            true => out.push_str(table),
            false => out.push(c),
        }
    }
    out
}

/// `sql` over the union table `union` and its parts, with `member` for `_member`.
fn over_union(sql: &str, union: &str) -> String {
    let mut local = naming(sql, union);
    for member in MEMBERS {
        local = local.replace(
            &format!("{member}.air"),
            &format!("(SELECT * FROM {union} WHERE member = '{member}')"),
        );
    }
    local.replace("_member", "member")
}

/// A value as both engines render it: timestamps in UTC with `Z`.
fn normal(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') => Value::String(
            s.trim_end_matches("+00:00")
                .trim_end_matches('Z')
                .to_owned()
                + "Z",
        ),
        other => other.clone(),
    }
}

/// The JSON kind of a value: null, bool, integer, float, string, array, object.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Asserts that `got` equals `want` row by row: the same columns (a leading `_` aside), the
/// same JSON kind and value in each cell (NULLs included), floats within 1e-9 (relative).
fn assert_same(what: &str, got: &Value, want: &Value) {
    let (g, w) = (
        got.as_array().expect("rows"),
        want.as_array().expect("rows"),
    );
    assert_eq!(
        g.len(),
        w.len(),
        "{what}: {} rows, expected {}",
        g.len(),
        w.len()
    );
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let (a, b) = (a.as_object().expect("row"), b.as_object().expect("row"));
        let names = |o: &serde_json::Map<String, Value>| {
            let mut n: Vec<String> = o.keys().map(|k| k.trim_start_matches('_').into()).collect();
            n.sort();
            n
        };
        assert_eq!(names(a), names(b), "{what}: row {i}: columns");
        for (k, va) in a {
            let vb = b
                .get(k.as_str())
                .or_else(|| b.get(k.trim_start_matches('_')))
                .expect("column");
            let (va, vb) = (normal(va), normal(vb));
            assert_eq!(kind(&va), kind(&vb), "{what}: row {i}: {k}: {va} vs {vb}");
            match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) if va.is_f64() => assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{what}: row {i}: {k}: {x} vs {y}"
                ),
                _ => assert_eq!(va, vb, "{what}: row {i}: {k}"),
            }
        }
    }
}

/// Writes the union of `parts` (member name, CSV) with a `member` column.
fn union_csv(parts: &[(&str, &Path)], out: &Path) {
    let mut text = String::new();
    for (i, (member, csv)) in parts.iter().enumerate() {
        for (j, line) in std::fs::read_to_string(csv)
            .expect("csv")
            .lines()
            .enumerate()
        {
            match (i, j) {
                (0, 0) => text.push_str(&format!("member,{line}\n")),
                (_, 0) => {}
                _ => text.push_str(&format!("{member},{line}\n")),
            }
        }
    }
    std::fs::write(out, text).expect("write union");
}

/// The asker's own table: the three cities and one without data, from the Destatis table the
/// binary embeds (`allmende sample districts`).
fn cities_csv(dir: &Path) -> PathBuf {
    let districts = dir.join("districts.csv");
    let out = allmende(&["sample", "districts", "-o", path(&districts)]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&districts).expect("districts");
    let mut csv = String::from("member,name,population,area_km2\n");
    for (member, ags) in [
        ("moenchengladbach", "05116"),
        ("muenster", "05515"),
        ("wuerzburg", "09663"),
        ("bochum", "05911"),
    ] {
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(&format!("{ags};")))
            .expect("district")
            .split(';')
            .collect();
        // AGS;type;name;NUTS3;area_km2;population;…
        let name = row[2].split(',').next().unwrap_or(row[2]);
        csv.push_str(&format!("{member},{name},{},{}\n", row[5], row[4]));
    }
    let file = dir.join("cities.csv");
    std::fs::write(&file, csv).expect("cities");
    file
}

/// Runs `queries` with DuckDB over `tables` (name, CSV); one answer per query.
fn duckdb(python: &str, tables: &[(&str, &Path)], queries: &[String]) -> Vec<Value> {
    use std::io::Write;
    let script = allmende_e2e::manifest_dir().join("reference/duckdb_sql.py");
    let doc = json!({
        "tables": tables.iter().map(|(n, p)| (n.to_string(), json!(path(p)))).collect::<serde_json::Map<_, _>>(),
        "types": { "timestamp": "TIMESTAMP", "station": "VARCHAR", "member": "VARCHAR", "district_key": "VARCHAR" },
        "queries": queries,
    });
    let mut child = std::process::Command::new(python)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("duckdb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("duckdb json")
}

#[test]
fn federated_answers_equal_datafusion_and_duckdb_over_the_union() {
    let (muenster, ms_csv) = city("Stadt Münster", "05515", "127.0.0.41", "offer-open.jsonld");
    let (gladbach, mg_csv) = city(
        "Stadt Mönchengladbach",
        "05116",
        "127.0.0.42",
        "offer-open.jsonld",
    );
    let (wuerzburg, wue_csv) = city("Stadt Würzburg", "09663", "127.0.0.43", "offer-open.jsonld");
    federate(&[&muenster, &gladbach, &wuerzburg], "regio");
    for n in [&muenster, &gladbach, &wuerzburg] {
        n.ok(&["dataset", "publish", "air"]);
    }
    poll(
        "catalog replicated",
        Duration::from_secs(20),
        || (muenster.get("/api/v1/catalog?theme=ENVI")["total"] == 3).then_some(()),
        || muenster.get("/api/v1/catalog?theme=ENVI").to_string(),
    );
    let dir = muenster.dir.path();
    let union = dir.join("union.csv");
    union_csv(
        &[
            ("moenchengladbach", &mg_csv),
            ("muenster", &ms_csv),
            ("wuerzburg", &wue_csv),
        ],
        &union,
    );
    muenster.ok(&["dataset", "import", path(&union), "--slug", "ref_all"]);
    let cities = cities_csv(dir);
    muenster.ok(&["dataset", "import", path(&cities), "--slug", "cities"]);

    let python = allmende_e2e::python_with("duckdb", "the DuckDB second opinion");
    let second = python.as_deref().map(|python| {
        let sqls: Vec<String> = QUERIES.iter().map(|q| over_union(q, "u")).collect();
        duckdb(python, &[("u", &union), ("cities", &cities)], &sqls)
    });
    assert!(QUERIES.len() >= 40);
    for (i, q) in QUERIES.iter().enumerate() {
        let sql = naming(q, "federation.air_quality_hourly");
        let (status, answer) = muenster.post(
            "/api/v1/query",
            &json!({ "sql": sql, "require_all": true, "deadline_ms": 10_000 }),
        );
        assert_eq!(status, 200, "{sql}: {answer}");
        for m in answer["members"].as_array().expect("members") {
            assert_eq!(m["status"], "ok", "{sql}: {m}");
        }
        let reference = muenster.sql_json(&over_union(q, "ref_all"));
        assert_same(
            &format!("#{i} {sql} (DataFusion)"),
            &answer["rows"],
            &reference,
        );
        if let Some(second) = &second {
            let duck = &second[i];
            assert!(duck.get("error").is_none(), "#{i} {sql}: DuckDB: {duck}");
            let columns: Vec<String> = answer["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| {
                    c.as_str()
                        .unwrap_or_default()
                        .trim_start_matches('_')
                        .to_owned()
                })
                .collect();
            assert_eq!(json!(columns), duck["columns"], "#{i} {sql}: columns");
            assert_same(
                &format!("#{i} {sql} (DuckDB)"),
                &answer["rows"],
                &duck["rows"],
            );
        }
    }
}
