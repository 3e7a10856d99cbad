//! Black-box tests of federated SQL with three real node processes and known data: every
//! federated answer equals the same SQL run by one DataFusion over the union of the permitted
//! data; each provider enforces its own policy (columns, aggregate-only with a minimum group
//! size, purpose); attempts around a policy are refused or suppressed; a stopped provider costs
//! at most the deadline; receipts verify offline.

use std::path::Path;
use std::time::{Duration, Instant};

use allmende_e2e::{TestNode, air_city as city, allmende, federate, path, poll};
use serde_json::{Value, json};

const RESEARCH: &str = "https://w3id.org/dpv#AcademicResearch";

fn query(node: &TestNode, body: Value) -> (u16, Value) {
    node.post("/api/v1/query", &body)
}

fn status_of<'a>(answer: &'a Value, member: &str) -> &'a Value {
    answer["members"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["member"] == member))
        .unwrap_or_else(|| panic!("no member `{member}` in {answer}"))
}

/// Compares row sets: equal strings and integers, floats within 1e-9 (relative).
fn assert_rows_equal(got: &Value, want: &Value, what: &str) {
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
    for (a, b) in g.iter().zip(w) {
        let (a, b) = (a.as_object().expect("row"), b.as_object().expect("row"));
        assert_eq!(a.len(), b.len(), "{what}: columns differ: {a:?} vs {b:?}");
        for (k, va) in a {
            let vb = &b[k.trim_start_matches('_')];
            let vb = if vb.is_null() { &b[k.as_str()] } else { vb };
            match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) if va.is_f64() || vb.is_f64() => {
                    assert!(
                        (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                        "{what}: {k}: {x} vs {y}"
                    );
                }
                _ => assert_eq!(va, vb, "{what}: column {k}"),
            }
        }
    }
}

/// The expected answer to `sql`, which names the federated table and the members' tables: the
/// same SQL over `union`, each member's table its part of it.
fn reference(asker: &TestNode, union: &str, sql: &str) -> Value {
    let mut local = sql.replace("federation.air_quality_hourly", union);
    for member in ["muenster", "moenchengladbach", "wuerzburg"] {
        local = local.replace(
            &format!("{member}.air"),
            &format!("(SELECT * FROM {union} WHERE member = '{member}')"),
        );
    }
    asker.sql_json(&local.replace("_member", "member"))
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
            if j == 0 {
                if i == 0 {
                    text.push_str(&format!("member,{line}\n"));
                }
                continue;
            }
            text.push_str(&format!("{member},{line}\n"));
        }
    }
    std::fs::write(out, text).expect("write union");
}

#[test]
fn federated_sql_across_three_cities() {
    let (muenster, ms_csv) = city("Stadt Münster", "05515", "127.0.0.21", "offer-open.jsonld");
    let (gladbach, mg_csv) = city(
        "Stadt Mönchengladbach",
        "05116",
        "127.0.0.22",
        "offer-columns.jsonld",
    );
    let (mut wuerzburg, wue_csv) = city(
        "Stadt Würzburg",
        "09663",
        "127.0.0.23",
        "offer-aggregate-k5.jsonld",
    );
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

    // Reference tables on the asking node: all three cities, and those that allow rows.
    let dir = muenster.dir.path();
    let all = dir.join("all.csv");
    union_csv(
        &[
            ("moenchengladbach", &mg_csv),
            ("muenster", &ms_csv),
            ("wuerzburg", &wue_csv),
        ],
        &all,
    );
    muenster.ok(&["dataset", "import", path(&all), "--slug", "ref_all"]);
    let rows_ok = dir.join("rows.csv");
    union_csv(
        &[("moenchengladbach", &mg_csv), ("muenster", &ms_csv)],
        &rows_ok,
    );
    muenster.ok(&["dataset", "import", path(&rows_ok), "--slug", "ref_rows"]);

    // 1. An aggregate over every city, with the purpose Würzburg requires: exact.
    let sql = "SELECT _member, station, COUNT(*) AS n, SUM(no2_ugm3) AS s, MIN(pm10_ugm3) AS lo, \
               MAX(no2_ugm3) AS hi, AVG(no2_ugm3) AS mean FROM federation.air_quality_hourly \
               WHERE station <> 'none' GROUP BY _member, station ORDER BY _member, station";
    let (status, answer) = query(&muenster, json!({ "sql": sql, "purpose": RESEARCH }));
    assert_eq!(status, 200, "{answer}");
    // Mönchengladbach's policy does not allow pm10: denied, and its rows are missing.
    assert_eq!(status_of(&answer, "moenchengladbach")["status"], "denied");
    assert_eq!(status_of(&answer, "wuerzburg")["status"], "ok");
    assert_eq!(status_of(&answer, "muenster")["status"], "ok");
    let sql_no_pm10 = sql.replace("MIN(pm10_ugm3)", "MIN(no2_ugm3)");
    let (_, answer) = query(
        &muenster,
        json!({ "sql": sql_no_pm10, "purpose": RESEARCH, "require_all": true }),
    );
    assert_rows_equal(
        &answer["rows"],
        &reference(&muenster, "ref_all", &sql_no_pm10),
        "aggregate over all",
    );
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(9));

    // 1b. COUNT(*) alone, over everything and per member: one group per provider.
    for sql in [
        "SELECT COUNT(*) AS n FROM federation.air_quality_hourly",
        "SELECT _member, COUNT(*) AS n FROM federation.air_quality_hourly GROUP BY _member ORDER BY _member",
    ] {
        let (status, answer) = query(
            &muenster,
            json!({ "sql": sql, "purpose": RESEARCH, "require_all": true }),
        );
        assert_eq!(status, 200, "{sql}: {answer}");
        assert_rows_equal(&answer["rows"], &reference(&muenster, "ref_all", sql), sql);
    }

    // 2. Rows: Würzburg gives aggregates only; the others' rows equal the reference exactly.
    let rows_sql = "SELECT _member, station, timestamp, no2_ugm3 FROM federation.air_quality_hourly \
                    WHERE no2_ugm3 > 30 ORDER BY _member, timestamp, station";
    let (status, answer) = query(&muenster, json!({ "sql": rows_sql }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&answer, "wuerzburg")["status"], "denied");
    assert_rows_equal(
        &answer["rows"],
        &reference(&muenster, "ref_rows", rows_sql),
        "rows",
    );

    // 3. Ways around a policy.
    for (sql, member) in [
        (
            "SELECT pm10_ugm3 AS harmless FROM moenchengladbach.air",
            "moenchengladbach",
        ),
        (
            "SELECT pm10_ugm3 * 1 AS x FROM moenchengladbach.air",
            "moenchengladbach",
        ),
        (
            "SELECT station FROM moenchengladbach.air WHERE pm10_ugm3 > 0",
            "moenchengladbach",
        ),
        ("SELECT station, no2_ugm3 FROM wuerzburg.air", "wuerzburg"),
    ] {
        let (status, answer) = query(&muenster, json!({ "sql": sql, "purpose": RESEARCH }));
        assert_eq!(status, 200, "{sql}: {answer}");
        assert_eq!(
            status_of(&answer, member)["status"],
            "denied",
            "{sql}: {answer}"
        );
        assert_eq!(answer["rows"], json!([]), "{sql}");
    }
    // Grouping by a unique key: every group has one row, below k = 5, so all are suppressed.
    let (_, answer) = query(
        &muenster,
        json!({
            "sql": "SELECT station, timestamp, COUNT(*) AS n FROM wuerzburg.air GROUP BY station, timestamp",
            "purpose": RESEARCH,
        }),
    );
    let w = status_of(&answer, "wuerzburg");
    assert_eq!(
        (
            w["status"].as_str(),
            w["rows"].as_u64(),
            w["suppressed"].as_u64()
        ),
        (Some("ok"), Some(0), Some(144))
    );
    // Differencing needs filters that cut groups: refused for a non-grouping column.
    let (_, answer) = query(
        &muenster,
        json!({
            "sql": "SELECT station, COUNT(*) AS n FROM wuerzburg.air WHERE no2_ugm3 > 50 GROUP BY station",
            "purpose": RESEARCH,
        }),
    );
    assert_eq!(status_of(&answer, "wuerzburg")["status"], "denied");
    assert_eq!(
        status_of(&answer, "wuerzburg")["code"],
        "filter-outside-groups",
        "{answer}"
    );
    assert!(
        status_of(&answer, "wuerzburg")["reason"]
            .as_str()
            .expect("reason")
            .contains("grouping expressions")
    );
    // Without the purpose the policy asks for: denied.
    let (_, answer) = query(
        &muenster,
        json!({ "sql": "SELECT COUNT(*) AS n FROM wuerzburg.air" }),
    );
    assert_eq!(status_of(&answer, "wuerzburg")["status"], "denied");

    // 4. DataFusion's dialect: expressions anywhere, DISTINCT, joins with the asker's own
    // tables, subqueries, set operations, windows, CTEs; each equal to the same SQL over the
    // union of what the members' policies let leave.
    for (sql, union) in [
        (
            "SELECT date_trunc('day', timestamp) AS day, count(DISTINCT station) AS stations, \
             round(avg(no2_ugm3), 6) AS mean FROM federation.air_quality_hourly \
             WHERE _member <> 'wuerzburg' GROUP BY 1 ORDER BY 1",
            "ref_rows",
        ),
        (
            // Grouping by an expression under Würzburg's minimum group size: 6 rows an hour.
            "SELECT _member, EXTRACT(HOUR FROM timestamp) AS hour, count(*) AS n, \
             max(no2_ugm3) AS hi FROM federation.air_quality_hourly GROUP BY 1, 2 ORDER BY 1, 2",
            "ref_all",
        ),
        (
            "SELECT f.station, count(*) AS n FROM federation.air_quality_hourly f \
             JOIN (SELECT DISTINCT station FROM ref_all WHERE member = 'muenster') m \
             ON f.station = m.station WHERE f._member <> 'wuerzburg' \
             GROUP BY f.station ORDER BY f.station",
            "ref_rows",
        ),
        (
            "SELECT station, timestamp, no2_ugm3 FROM muenster.air WHERE station IN \
             (SELECT station FROM moenchengladbach.air WHERE no2_ugm3 > 40) \
             ORDER BY station, timestamp",
            "ref_rows",
        ),
        (
            "SELECT station FROM muenster.air EXCEPT SELECT station FROM moenchengladbach.air \
             ORDER BY 1",
            "ref_rows",
        ),
        (
            "SELECT _member, station, timestamp, rank() OVER (PARTITION BY _member, station \
             ORDER BY no2_ugm3 DESC, timestamp) AS r FROM federation.air_quality_hourly \
             WHERE _member <> 'wuerzburg' ORDER BY 1, 2, 4 LIMIT 20",
            "ref_rows",
        ),
        (
            "WITH d AS (SELECT _member AS m, CASE WHEN no2_ugm3 > 40 THEN 'high' ELSE 'low' END \
             AS level FROM federation.air_quality_hourly WHERE _member <> 'wuerzburg') \
             SELECT m, level, count(*) AS n FROM d GROUP BY m, level HAVING count(*) > 1 \
             ORDER BY m, level",
            "ref_rows",
        ),
    ] {
        let (status, answer) = query(&muenster, json!({ "sql": sql, "purpose": RESEARCH }));
        assert_eq!(status, 200, "{sql}: {answer}");
        assert_rows_equal(&answer["rows"], &reference(&muenster, union, sql), sql);
    }

    // 5. Bad queries: clear errors, nothing asked.
    for (sql, code, needle) in [
        ("SELEC 1", 400, "Column: 1"),
        ("SELECT * FROM nowhere.air", 404, "nowhere"),
        ("SELECT * FROM federation.no_such_kind", 404, "no_such_kind"),
        // No member has the column: an error naming it, not an empty answer.
        (
            "SELECT nope FROM federation.air_quality_hourly",
            400,
            "nope",
        ),
        ("DROP TABLE muenster.air", 403, "read-only"),
    ] {
        let (status, body) = query(&muenster, json!({ "sql": sql }));
        assert_eq!(status, code, "{sql}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{sql}: {body}");
    }

    // 6. A stopped provider costs at most the deadline; require_all turns it into an error.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(wuerzburg.pid(), libc::SIGSTOP) };
    let started = Instant::now();
    let (status, answer) = query(
        &muenster,
        json!({ "sql": sql_no_pm10, "purpose": RESEARCH, "deadline_ms": 1000 }),
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&answer, "wuerzburg")["status"], "timeout");
    assert_eq!(status_of(&answer, "muenster")["status"], "ok");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // A join over the stopped member: the answer says which side is incomplete.
    let (status, answer) = query(
        &muenster,
        json!({
            "sql": "SELECT m.station, count(w.station) AS n FROM muenster.air m LEFT JOIN \
                    wuerzburg.air w ON m.timestamp = w.timestamp GROUP BY m.station",
            "purpose": RESEARCH,
            "deadline_ms": 1000,
        }),
    );
    assert_eq!(status, 200, "{answer}");
    let parts: Vec<(&str, &str)> = answer["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["table"].as_str().unwrap_or(""),
                m["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(parts.contains(&("wuerzburg.air", "timeout")), "{answer}");
    assert!(parts.contains(&("muenster.air", "ok")), "{answer}");
    let (status, body) = query(
        &muenster,
        json!({ "sql": sql_no_pm10, "purpose": RESEARCH, "deadline_ms": 500, "require_all": true }),
    );
    assert_eq!(status, 424, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("wuerzburg timeout"),
        "{body}"
    );
    unsafe { libc::kill(wuerzburg.pid(), libc::SIGCONT) };

    // 7. Receipts verify offline, and a changed one does not.
    let receipt = dir.join("receipt.hex");
    let out = muenster.cli(&[
        "query",
        &sql_no_pm10,
        "--purpose",
        RESEARCH,
        "--receipt",
        path(&receipt),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = allmende(&["receipt", "verify", path(&receipt)]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let mut bytes = hex_decode(std::fs::read_to_string(&receipt).expect("receipt").trim());
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&receipt, hex_encode(&bytes)).expect("write");
    assert!(
        !allmende(&["receipt", "verify", path(&receipt)])
            .status
            .success()
    );

    // Every decision is in the providers' audit logs.
    assert!(
        wuerzburg.get("/api/v1/audit")["size"]
            .as_u64()
            .expect("size")
            >= 8
    );
    assert!(wuerzburg.ok(&["audit", "verify"]).contains("intact"));
    // Prometheus metrics count the queries asked here and every member's answers.
    let metrics = allmende_e2e::http()
        .get(format!("{}/metrics", muenster.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    for line in [
        "allmende_federated_queries_total{status=\"ok\"}",
        "allmende_member_answers_total{status=\"denied\"}",
        "allmende_member_answers_total{status=\"timeout\"}",
        "allmende_connected_peers 2",
        "allmende_federated_query_seconds_count",
    ] {
        assert!(metrics.contains(line), "`{line}` missing from:\n{metrics}");
    }
    // Members cosign each other's audit checkpoints as they sync.
    poll(
        "Würzburg's checkpoints cosigned by a peer",
        Duration::from_secs(20),
        || (wuerzburg.get("/api/v1/audit")["cosignatures"].as_u64() >= Some(1)).then_some(()),
        || wuerzburg.get("/api/v1/audit").to_string(),
    );
    wuerzburg.stop(libc::SIGTERM, Duration::from_secs(10));
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
