//! A hostile but authorised user against real node processes: every request that crashed or
//! starved a node before (stack overflows from deep expressions, CPU-bound queries past their
//! time limit, bodies and widths without bounds, functions that build gigabytes, empty and
//! plain-text replies) and variants of it. Each must be answered with a 4xx problem document,
//! leave the node up and responsive, and leave the stored data as it was.

use std::time::{Duration, Instant};

use allmende_e2e::{TestNode, air_city, federate, http, poll};
use serde_json::{Value, json};

/// A running node with a 3-second query time limit and a table `big` of 1000 rows.
fn node() -> TestNode {
    let mut node = TestNode::init_at(
        "Stadt Münster",
        "05515",
        "127.0.0.1",
        &[
            "--sql-timeout-secs",
            "3",
            "--contact-email",
            "daten@example.org",
        ],
    );
    node.start();
    let csv = node.dir.path().join("big.csv");
    let mut text = String::from("a,b,c\n");
    for i in 0..1000 {
        text.push_str(&format!("{i},{},s{i}\n", i * 2));
    }
    std::fs::write(&csv, text).unwrap();
    node.ok(&["dataset", "import", csv.to_str().unwrap(), "--slug", "big"]);
    node
}

/// `POST path` with `body`, with a client timeout; the status and the body as JSON (`null` if
/// it is not JSON), and the content type.
fn post(node: &TestNode, path: &str, body: &Value, timeout: Duration) -> (u16, Value, String) {
    let response = http()
        .post(format!("{}{path}", node.url))
        .timeout(timeout)
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: no answer: {e}"));
    answer(response)
}

fn answer(response: reqwest::blocking::Response) -> (u16, Value, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_default(),
        content_type,
    )
}

fn sql(node: &TestNode, text: &str) -> (u16, Value, String) {
    post(
        node,
        "/api/v1/sql",
        &json!({ "sql": text }),
        Duration::from_secs(30),
    )
}

/// Asserts a problem document with `status` whose detail contains `needle`.
fn assert_problem(got: &(u16, Value, String), status: u16, needle: &str, what: &str) {
    let (s, body, content_type) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content type {content_type}, body {body}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "{what}: `{needle}` not in {detail}"
    );
    assert!(
        !detail.contains("__fed") && !detail.contains("__a0"),
        "{what}: {detail}"
    );
}

/// Asserts that the node answers `/healthz` at once.
fn assert_up(node: &TestNode) {
    let started = Instant::now();
    let response = http()
        .get(format!("{}/healthz", node.url))
        .timeout(Duration::from_secs(2))
        .send()
        .expect("the node is up");
    assert!(response.status().is_success());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// The CPU time the process has used so far.
fn cpu_of(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

#[test]
fn deep_expressions_are_refused_with_the_limit_named_before_they_reach_a_planner() {
    let node = node();
    for (what, text) in [
        (
            "1 000 additions",
            format!("SELECT {}", chain("1", "+", 1000)),
        ),
        (
            "2 000 ORs",
            format!("SELECT {}", chain("a = 1", " OR ", 2000)),
        ),
        (
            "2 000 ANDs",
            format!("SELECT * FROM big WHERE {}", chain("a = 1", " AND ", 2000)),
        ),
        (
            "2 000 concatenations",
            format!("SELECT {}", chain("'x'", " || ", 2000)),
        ),
        ("2 000 UNIONs", chain("SELECT 1", " UNION ALL ", 2000)),
        (
            "50 000 additions",
            format!("SELECT {}", chain("1", "+", 50_000)),
        ),
    ] {
        assert_problem(&sql(&node, &text), 400, "limit is 500", what);
        assert_up(&node);
    }
    // Shallow enough, they are answered.
    let (status, body, _) = sql(&node, &format!("SELECT {} AS n", chain("1", "+", 400)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["n"], 400);
    // Federated SQL and transfer filters are bounded the same way.
    let having = format!(
        "SELECT COUNT(*) FROM federation.air HAVING COUNT(*) > {}",
        chain("0", "+", 1000)
    );
    let got = post(
        &node,
        "/api/v1/query",
        &json!({ "sql": having }),
        Duration::from_secs(30),
    );
    assert_problem(&got, 400, "limit is 500", "HAVING with 1 000 additions");
    let filter = chain("a = 1", " AND ", 5000);
    let got = post(
        &node,
        "/api/v1/transfers",
        &json!({ "dataset": "muenster.big", "where": filter }),
        Duration::from_secs(30),
    );
    assert_problem(&got, 400, "limit is 500", "a transfer filter of 5 000 ANDs");
    assert_up(&node);
}

#[test]
fn a_cpu_bound_query_stops_when_its_client_leaves_and_healthz_stays_fast_meanwhile() {
    let node = node();
    let heavy =
        "SELECT count(*) FROM big x, big y, big z, big w WHERE x.c || y.c || z.c || w.c = 'no'";
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{}/api/v1/sql", node.url);
            std::thread::spawn(move || {
                // The client gives up after 1.5 s.
                let sent = http()
                    .post(url)
                    .timeout(Duration::from_millis(1500))
                    .json(&json!({ "sql": heavy }))
                    .send();
                assert!(sent.is_err(), "the heavy query answered within 1.5 s");
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_millis(1400);
    while Instant::now() < until {
        let started = Instant::now();
        assert_up(&node);
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in clients {
        c.join().unwrap();
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    // The measured figure is in BENCHMARKS.md; here only what no shared test machine misses.
    assert!(
        p99 < Duration::from_millis(500),
        "healthz p99 {p99:?} while queries run"
    );
    // Once the clients are gone, the queries stop: the node is idle again.
    std::thread::sleep(Duration::from_millis(1000));
    let before = cpu_of(node.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_of(node.pid()) - before;
    assert!(
        spent < Duration::from_millis(600),
        "the node spent {spent:?} of CPU after its clients left"
    );
    assert_eq!(sql(&node, "SELECT 1 AS one").1[0]["one"], 1);
}

#[test]
fn the_time_limit_holds_for_cpu_bound_and_recursive_queries() {
    let node = node();
    for (what, text) in [
        (
            "a four-way cross join",
            "SELECT count(*) FROM big x, big y, big z, big w WHERE x.c || y.c || z.c || w.c = 'no'",
        ),
        (
            "a recursive query without end",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        ),
    ] {
        let started = Instant::now();
        let got = sql(&node, text);
        assert_problem(&got, 422, "did not finish within 3s", what);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_up(&node);
    }
}

#[test]
fn sigterm_ends_running_queries_and_the_node_exits_within_its_grace_period() {
    let mut node = TestNode::init("Stadt Münster", "05515");
    node.start();
    let csv = node.dir.path().join("big.csv");
    let rows: String = (0..1000).map(|i| format!("{i},s{i}\n")).collect();
    std::fs::write(&csv, format!("a,c\n{rows}")).unwrap();
    node.ok(&["dataset", "import", csv.to_str().unwrap(), "--slug", "big"]);
    let url = format!("{}/api/v1/sql", node.url);
    let client = std::thread::spawn(move || {
        let heavy =
            "SELECT count(*) FROM big x, big y, big z, big w WHERE x.c || y.c || z.c || w.c = 'no'";
        http()
            .post(url)
            .timeout(Duration::from_secs(60))
            .json(&json!({ "sql": heavy }))
            .send()
            .map(answer)
    });
    std::thread::sleep(Duration::from_millis(800));
    let started = Instant::now();
    let status = node.stop(libc::SIGTERM, Duration::from_secs(12));
    assert!(status.success(), "{status:?}");
    // Cancelled at once, not after the 60 s query limit or the 10 s grace period.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    if let Ok((code, body, _)) = client.join().unwrap() {
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["type"], "urn:allmende:problem:shutting-down");
    }
}

#[test]
fn files_with_too_many_columns_are_refused_and_nothing_is_committed() {
    let node = node();
    for columns in [20_000, 100_000] {
        let header: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
        let row = vec!["1"; columns].join(",");
        let text = format!("{}\n{row}\n{row}\n{row}\n", header.join(","));
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(text.into_bytes()).file_name("wide.csv"),
            )
            .text("title", "Breit");
        let response = http()
            .post(format!("{}/api/v1/datasets", node.url))
            .multipart(form)
            .send()
            .expect("upload");
        assert_problem(
            &answer(response),
            422,
            "at most 4096",
            &format!("{columns} columns"),
        );
    }
    let list = node.get("/api/v1/datasets");
    assert_eq!(list["datasets"].as_array().unwrap().len(), 1, "{list}");
    let tmp = std::fs::read_dir(node.dir.path().join("tmp"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "spill")
        .count();
    assert_eq!(tmp, 0);
    // A file at the limit is imported.
    let header: Vec<String> = (0..4096).map(|i| format!("c{i}")).collect();
    let row = vec!["1"; 4096].join(",");
    let csv = node.dir.path().join("w.csv");
    std::fs::write(&csv, format!("{}\n{row}\n{row}\n", header.join(","))).unwrap();
    node.ok(&["dataset", "import", csv.to_str().unwrap(), "--slug", "w"]);
    let (status, body, _) = sql(&node, "SELECT count(*) AS n, sum(c4095) AS s FROM w");
    assert_eq!(
        (status, body[0]["n"].clone(), body[0]["s"].clone()),
        (200, json!(2), json!(2))
    );
}

#[test]
fn bodies_and_form_fields_over_their_limits_are_refused_without_holding_them() {
    let node = node();
    // Just over the limit: the node answers before the client has sent everything.
    let over = "x".repeat((1 << 20) + 4096);
    let response = http()
        .patch(format!("{}/api/v1/datasets/big", node.url))
        .json(&json!({ "description": over }))
        .send()
        .expect("PATCH");
    assert_problem(
        &answer(response),
        413,
        "limits.max_body_bytes",
        "a description over 1 MiB",
    );
    // Far over it, the node may close the connection while the client still sends; either
    // way it does not hold the body.
    let big = "x".repeat(50 << 20);
    if let Ok(response) = http()
        .patch(format!("{}/api/v1/datasets/big", node.url))
        .json(&json!({ "description": big }))
        .send()
    {
        assert_problem(
            &answer(response),
            413,
            "limits.max_body_bytes",
            "a 50 MB description",
        );
    }
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(b"a\n1\n".to_vec()).file_name("x.csv"),
        )
        // Just over the 64 KiB bound: small enough that the whole request sits in the socket
        // buffers before the node answers and closes (a far larger one may see the connection
        // close while still sending, as the 50 MB case above allows).
        .text("title", "t".repeat((64 << 10) + 1024));
    let response = http()
        .post(format!("{}/api/v1/datasets", node.url))
        .multipart(form)
        .send()
        .expect("upload");
    assert_problem(&answer(response), 413, "`title` exceeds", "a 65 KiB title");
    let response = http()
        .put(format!("{}/api/v1/datasets/big/policy", node.url))
        .body(vec![b' '; 2 << 20])
        .send()
        .expect("PUT");
    assert_problem(
        &answer(response),
        413,
        "limits.max_body_bytes",
        "a 2 MiB policy",
    );
    // A description within the limit is taken; one over it is refused and changes nothing.
    let response = http()
        .patch(format!("{}/api/v1/datasets/big", node.url))
        .json(&json!({ "description": "y".repeat(300 << 10) }))
        .send()
        .expect("PATCH");
    assert_problem(
        &answer(response),
        422,
        "at most 65536 bytes",
        "a 300 KB description",
    );
    let shown = node.get("/api/v1/datasets/big");
    assert_eq!(shown["record"]["description"], "", "{shown}");
    for (what, body) in [
        ("a NUL in the title", json!({ "title": "a\u{0}b" })),
        (
            "an escape in the keywords",
            json!({ "keywords": ["a\u{1b}[31m"] }),
        ),
    ] {
        let response = http()
            .patch(format!("{}/api/v1/datasets/big", node.url))
            .json(&body)
            .send()
            .expect("PATCH");
        assert_problem(&answer(response), 422, "control character", what);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    assert!(peak_kb < 1 << 20, "peak RSS {peak_kb} kB");
    assert_up(&node);
}

#[test]
fn functions_that_would_build_gigabytes_are_refused_before_they_do() {
    let node = node();
    for (what, text, status, needle) in [
        (
            "repeat",
            "SELECT length(repeat('x', 1000000000))",
            422,
            "at most 134217728 bytes",
        ),
        (
            "repeat of repeat",
            "SELECT length(repeat(repeat('x', 100000000), 30))",
            422,
            "at most",
        ),
        (
            "lpad",
            "SELECT length(lpad('x', 1000000000))",
            422,
            "at most",
        ),
        (
            "array_repeat",
            "SELECT cardinality(array_repeat(1, 1000000000))",
            422,
            "at most",
        ),
        (
            "range",
            "SELECT cardinality(range(1, 10000000000))",
            422,
            "at most",
        ),
        (
            "replace",
            "SELECT length(replace(repeat('a', 100000000), 'a', 'aaaaaaaaaa'))",
            422,
            "at most",
        ),
        (
            "levenshtein",
            "SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))",
            422,
            "steps",
        ),
        (
            "a regex too large",
            "SELECT regexp_like('a', 'a{1000}{1000}{1000}')",
            400,
            "regular expression",
        ),
        (
            "10 000 nested groups",
            &format!(
                "SELECT regexp_like('a', '{}a{}')",
                "(".repeat(10_000),
                ")".repeat(10_000)
            ),
            400,
            "regular expression",
        ),
        (
            "a division by zero",
            "SELECT a / 0 FROM big",
            422,
            "Divide by zero",
        ),
    ] {
        assert_problem(&sql(&node, text), status, needle, what);
        assert_up(&node);
    }
}

#[test]
fn every_error_is_a_problem_document() {
    let node = node();
    let get = |path: &str| {
        answer(
            http()
                .get(format!("{}{path}", node.url))
                .send()
                .expect("GET"),
        )
    };
    assert_problem(
        &get("/api/v1/datasets/%ff%fe"),
        400,
        "UTF-8",
        "an undecodable path",
    );
    assert_problem(&get("/api/v1/nothing"), 404, "", "an unknown route");
    let response = http()
        .delete(format!("{}/api/v1/sql", node.url))
        .send()
        .expect("DELETE");
    assert_problem(&answer(response), 405, "", "a method the route lacks");
    let response = http()
        .post(format!("{}/api/v1/sql", node.url))
        .header("content-type", "application/json")
        .body("{\"sql\": ")
        .send()
        .expect("POST");
    assert_problem(&answer(response), 400, "", "malformed JSON");
}

#[test]
fn federated_answers_are_named_as_locally_and_a_change_that_cannot_be_republished_is_refused() {
    let (a, _) = air_city("Stadt Münster", "05515", "127.0.0.31", "offer-open.jsonld");
    let (b, _) = air_city("Stadt Würzburg", "09663", "127.0.0.32", "offer-open.jsonld");
    federate(&[&a, &b], "hostile");
    for n in [&a, &b] {
        n.ok(&["dataset", "publish", "air"]);
    }
    poll(
        "both catalogs replicated",
        Duration::from_secs(20),
        || (a.get_query("/api/v1/catalog", &[("q", "Luftqualität")])["total"] == 2).then_some(()),
        || {
            a.get_query("/api/v1/catalog", &[("q", "Luftqualität")])
                .to_string()
        },
    );
    let (status, body) = a.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT COUNT(*), SUM(no2_ugm3), MAX(no2_ugm3) FROM federation.air_quality_hourly" }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["columns"],
        json!([
            "count(*)",
            "sum(federation.air_quality_hourly.no2_ugm3)",
            "max(federation.air_quality_hourly.no2_ugm3)"
        ])
    );
    // Errors of the merge name the query's own table and columns.
    let (status, body) = a.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT station, SUM(no2_ugm3) FROM federation.air_quality_hourly" }),
    );
    let got = (status, body, "application/problem+json".to_owned());
    assert_problem(
        &got,
        400,
        "federation.air_quality_hourly",
        "a missing GROUP BY",
    );
    // A change that would leave a published dataset unpublishable is refused, and changes
    // nothing; one that can be republished is, and the answer says so.
    let response = http()
        .patch(format!("{}/api/v1/datasets/air", a.url))
        .json(&json!({ "description": "" }))
        .send()
        .expect("PATCH");
    assert_problem(
        &answer(response),
        422,
        "withdraw it first",
        "an empty description",
    );
    assert_eq!(
        a.get("/api/v1/datasets/air")["record"]["description"],
        "Stündliche NO2- und PM10-Werte"
    );
    let response = http()
        .patch(format!("{}/api/v1/datasets/air", a.url))
        .json(&json!({ "description": "Neu: stündliche Werte" }))
        .send()
        .expect("PATCH");
    let (status, body, _) = answer(response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["federation"]["published"], true, "{body}");
    assert!(body["federation"]["seq"].as_u64().unwrap() >= 2, "{body}");
}
