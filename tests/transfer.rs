//! Black-box tests of whole-dataset transfer between two real node processes: under an
//! agreement only, the view the agreement permits (columns) with the rows asked for, Parquet or
//! Arrow, byte-identical to the owner's file and verified against its signed hash, refused for
//! an aggregate-only policy, resumed after the provider is killed mid-transfer and after the
//! consumer is, and recorded in both audit logs.

use std::path::Path;
use std::time::Duration;

use allmende_e2e::{AirSample, TestNode, federate, path, poll};
use serde_json::Value;

/// Imports generated air-quality data as `slug` under `policy_file` and publishes it.
fn offer(node: &TestNode, slug: &str, days: u32, stations: u32, policy_file: &str) {
    node.import_air(&AirSample {
        slug,
        title: &format!("Luftqualität {slug}"),
        district_key: "05515",
        days,
        stations,
        conforms: false,
    });
    node.attach_policy(slug, policy_file);
    node.ok(&["dataset", "publish", slug]);
}

fn sha256_hex(file: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn audit(node: &TestNode) -> Vec<Value> {
    node.get("/api/v1/audit/entries?limit=1000")["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Gives a node fixed libp2p ports on `ip` (free ones, found by binding), so that its peers
/// find it again after it restarts.
fn pin_p2p_ports(node: &TestNode, ip: &str) {
    let tcp = std::net::TcpListener::bind((ip, 0)).expect("tcp port");
    let udp = std::net::UdpSocket::bind((ip, 0)).expect("udp port");
    let config = node.dir.path().join("allmende.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replace(
            &format!("/ip4/{ip}/udp/0/quic-v1"),
            &format!(
                "/ip4/{ip}/udp/{}/quic-v1",
                udp.local_addr().expect("addr").port()
            ),
        )
        .replace(
            &format!("/ip4/{ip}/tcp/0"),
            &format!("/ip4/{ip}/tcp/{}", tcp.local_addr().expect("addr").port()),
        );
    std::fs::write(&config, text).expect("config");
}

fn pair(extra_provider: &[&str]) -> (TestNode, TestNode) {
    let mut args = vec![
        "--sync-interval-ms",
        "500",
        "--contact-email",
        "daten@example.org",
    ];
    args.extend_from_slice(extra_provider);
    let mut muenster = TestNode::init_at("Stadt Münster", "05515", "127.0.0.31", &args);
    let mut gladbach = TestNode::init_at(
        "Stadt Mönchengladbach",
        "05116",
        "127.0.0.32",
        &[
            "--sync-interval-ms",
            "500",
            "--contact-email",
            "daten@example.org",
        ],
    );
    pin_p2p_ports(&muenster, "127.0.0.31");
    pin_p2p_ports(&gladbach, "127.0.0.32");
    muenster.start();
    gladbach.start();
    federate(&[&muenster, &gladbach], "regio");
    (muenster, gladbach)
}

fn wait_catalog(node: &TestNode, n: u64) {
    poll(
        "catalog replicated",
        Duration::from_secs(20),
        || (node.get("/api/v1/catalog?theme=ENVI")["total"] == n).then_some(()),
        || node.get("/api/v1/catalog?theme=ENVI").to_string(),
    );
}

#[test]
fn whole_dataset_transfer_under_an_agreement() {
    let (muenster, gladbach) = pair(&[]);
    offer(&muenster, "air", 3, 3, "offer-open.jsonld");
    offer(&muenster, "airc", 3, 3, "offer-columns.jsonld");
    offer(&muenster, "aira", 3, 3, "offer-aggregate-k5.jsonld");
    wait_catalog(&gladbach, 3);
    let dir = gladbach.dir.path();

    // Without an agreement: refused with a clear message, nothing written.
    let out = gladbach.cli(&["fetch", "muenster.air", "-o", path(&dir.join("x.parquet"))]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no agreement"), "{err}");
    assert!(!dir.join("x.parquet").exists());

    // The whole dataset: byte-identical to the owner's file, whose hash the owner signed in
    // its catalog entry.
    let whole = dir.join("air.parquet");
    let printed = gladbach.ok(&["fetch", "muenster.air", "--negotiate", "-o", path(&whole)]);
    assert!(printed.contains("verified"), "{printed}");
    let owner = muenster.get("/api/v1/datasets/air");
    let checksum = owner["record"]["distributions"][0]["checksum"]["value"]
        .as_str()
        .expect("checksum")
        .to_owned();
    assert_eq!(sha256_hex(&whole), checksum);
    gladbach.ok(&["dataset", "import", path(&whole), "--slug", "air_copy"]);
    let totals = "SELECT COUNT(*) AS n, SUM(no2_ugm3) AS no2, MIN(timestamp) AS t0 FROM";
    assert_eq!(
        gladbach.sql_json(&format!("{totals} air_copy")),
        muenster.sql_json(&format!("{totals} air"))
    );

    // A row filter and a column subset: exactly the rows and columns asked for.
    let part = dir.join("part.parquet");
    gladbach.ok(&[
        "fetch",
        "muenster.air",
        "--columns",
        "station,no2_ugm3",
        "--where",
        "no2_ugm3 > 40 AND station IS NOT NULL",
        "-o",
        path(&part),
    ]);
    gladbach.ok(&["dataset", "import", path(&part), "--slug", "air_part"]);
    let schema = gladbach.get("/api/v1/datasets/air_part/schema");
    let names: Vec<&str> = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["station", "no2_ugm3"]);
    assert_eq!(
        gladbach.sql_json("SELECT station, COUNT(*) AS n, SUM(no2_ugm3) AS s FROM air_part GROUP BY station ORDER BY station"
        ),
        muenster.sql_json("SELECT station, COUNT(*) AS n, SUM(no2_ugm3) AS s FROM air WHERE no2_ugm3 > 40 GROUP BY station ORDER BY station"
        )
    );

    // allowedColumns: the view is narrowed to the permitted columns; asking for another one
    // is denied; Arrow IPC works too.
    let cols = dir.join("airc.arrow");
    gladbach.ok(&[
        "fetch",
        "muenster.airc",
        "--negotiate",
        "--format",
        "arrow",
        "-o",
        path(&cols),
    ]);
    let bytes = std::fs::read(&cols).expect("arrow file");
    assert_eq!(&bytes[..6], b"ARROW1");
    let transfers = gladbach.get("/api/v1/transfers");
    let last = &transfers["transfers"][0];
    assert_eq!(last["state"], "complete");
    assert_eq!(
        last["columns"],
        serde_json::json!(["district_key", "station", "timestamp", "no2_ugm3"])
    );
    let out = gladbach.cli(&["fetch", "muenster.airc", "--columns", "pm10_ugm3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not among the columns"), "{err}");

    // Aggregate-only data never leaves as rows.
    let out = gladbach.cli(&["fetch", "muenster.aira", "--negotiate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied"), "{err}");

    // Bad input: clear errors.
    let (status, body) = gladbach.post(
        "/api/v1/transfers",
        &serde_json::json!({ "dataset": "nobody.air" }),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = gladbach.post(
        "/api/v1/transfers",
        &serde_json::json!({ "dataset": "muenster.air", "where": "no2_ugm3 + 1 > 3" }),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = gladbach.post(
        "/api/v1/transfers",
        &serde_json::json!({ "dataset": "muenster.air", "format": "xlsx" }),
    );
    assert!((400..500).contains(&status));

    // Both audit logs: the provider's decisions (permit, deny) and the consumer's receipts.
    let provided = audit(&muenster);
    let kinds = |entries: &[Value], kind: &str, decision: &str| {
        entries
            .iter()
            .filter(|e| e["kind"] == kind && e["decision"] == decision)
            .count()
    };
    assert!(kinds(&provided, "transfer", "permit") >= 3, "{provided:?}");
    assert!(kinds(&provided, "transfer", "deny") >= 2, "{provided:?}");
    let received = audit(&gladbach);
    assert!(
        kinds(&received, "transfer-received", "complete") >= 3,
        "{received:?}"
    );
    assert!(kinds(&received, "transfer-received", "failed") >= 2);
    for n in [&muenster, &gladbach] {
        assert_eq!(n.get("/api/v1/audit/verify")["intact"], true);
    }
}

/// The transfer's record on the consumer.
fn record(node: &TestNode, id: &str) -> Value {
    node.get(&format!("/api/v1/transfers/{id}"))
}

#[test]
fn transfer_resumes_after_either_side_is_killed() {
    // The provider serves each transfer at 150 kB/s, so there is time to break it.
    let (mut muenster, mut gladbach) = pair(&["--transfer-rate-bytes", "150000"]);
    offer(&muenster, "big", 600, 20, "offer-open.jsonld");
    wait_catalog(&gladbach, 1);
    let size = muenster.get("/api/v1/datasets/big")["record"]["distributions"][0]["byte_size"]
        .as_u64()
        .expect("size");
    assert!(size > 500_000, "the file is too small to break: {size}");

    // 1. The provider dies mid-transfer and comes back: the consumer resumes where it was.
    let (status, started) = gladbach.post(
        "/api/v1/transfers",
        &serde_json::json!({ "dataset": "muenster.big", "negotiate": true }),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    let part = gladbach
        .dir
        .path()
        .join(format!("transfers/incoming/{id}.part"));
    poll(
        "a part received",
        Duration::from_secs(20),
        || (std::fs::metadata(&part).map_or(0, |m| m.len()) > size / 4).then_some(()),
        || record(&gladbach, &id).to_string(),
    );
    muenster.stop(libc::SIGKILL, Duration::from_secs(5));
    let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
    assert!(kept > 0 && kept < size);
    muenster.start();
    let done = poll(
        "transfer complete after the provider came back",
        Duration::from_secs(60),
        || {
            let r = record(&gladbach, &id);
            (r["state"] != "running").then_some(r)
        },
        || record(&gladbach, &id).to_string(),
    );
    assert_eq!(done["state"], "complete", "{done}");
    assert!(done["attempts"].as_u64().unwrap_or(0) >= 2, "{done}");
    // The provider served the rest from where the consumer was, not from byte 0.
    let resumed = audit(&muenster).into_iter().any(|e| {
        e["kind"] == "transfer"
            && e["decision"] == "permit"
            && !e["detail"]
                .as_str()
                .unwrap_or("")
                .contains(" bytes from 0,")
    });
    assert!(resumed, "{:?}", audit(&muenster));

    // 2. The consumer dies mid-transfer: it continues by itself when it starts again.
    let (status, started) = gladbach.post(
        "/api/v1/transfers",
        &serde_json::json!({ "dataset": "muenster.big", "format": "parquet" }),
    );
    assert_eq!(status, 202, "{started}");
    let id2 = started["id"].as_str().expect("id").to_owned();
    let part2 = gladbach
        .dir
        .path()
        .join(format!("transfers/incoming/{id2}.part"));
    poll(
        "a part received",
        Duration::from_secs(20),
        || (std::fs::metadata(&part2).map_or(0, |m| m.len()) > size / 4).then_some(()),
        || record(&gladbach, &id2).to_string(),
    );
    gladbach.stop(libc::SIGKILL, Duration::from_secs(5));
    gladbach.start();
    let done = poll(
        "transfer complete after the consumer came back",
        Duration::from_secs(60),
        || {
            let r = record(&gladbach, &id2);
            (r["state"] != "running").then_some(r)
        },
        || record(&gladbach, &id2).to_string(),
    );
    assert_eq!(done["state"], "complete", "{done}");

    // Both files equal the owner's, byte for byte.
    let checksum =
        muenster.get("/api/v1/datasets/big")["record"]["distributions"][0]["checksum"]["value"]
            .as_str()
            .expect("checksum")
            .to_owned();
    for t in [&id, &id2] {
        let file = gladbach.dir.path().join(format!("{t}.parquet"));
        let mut out = std::fs::File::create(&file).expect("file");
        let mut response = allmende_e2e::http()
            .get(format!("{}/api/v1/transfers/{t}/data", gladbach.url))
            .timeout(Duration::from_secs(60))
            .send()
            .expect("GET data");
        assert!(response.status().is_success());
        std::io::copy(&mut response, &mut out).expect("download");
        assert_eq!(sha256_hex(&file), checksum);
    }
}
