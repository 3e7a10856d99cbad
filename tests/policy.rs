//! Black-box tests of usage policies with real node processes: the local `policy check` and
//! `policy evaluate` commands, attaching a signed policy, negotiating an agreement between two
//! members over libp2p, revoking it, and verifying the audit log online and offline; a policy
//! that permits queries only under an agreement.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use allmende_e2e::{AirSample, TestNode, allmende, federate, path, poll};
use serde_json::{Value, json};

fn data(name: &str) -> PathBuf {
    allmende_e2e::manifest_dir().join("data").join(name)
}

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn policy_check_and_evaluate_run_locally_with_stable_json() {
    let offer = data("offer-research.jsonld");
    // As written for `policy attach`, the offer leaves the target and assigner to the node;
    // on its own it is incomplete, and `check` says so.
    let out = allmende(&["policy", "check", path(&offer)]);
    assert!(!out.status.success());
    assert!(
        stdout_json(&out)["error"]
            .as_str()
            .expect("error")
            .contains("target")
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut policy: Value =
        serde_json::from_str(&std::fs::read_to_string(&offer).expect("read")).expect("json");
    policy["target"] = "urn:allmende:dataset:air".into();
    policy["assigner"] = "did:web:wuerzburg.de".into();
    let policy_file = dir.path().join("p.jsonld");
    std::fs::write(&policy_file, policy.to_string()).expect("write");
    let out = allmende(&["policy", "check", path(&policy_file)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = stdout_json(&out);
    assert_eq!(v["valid"], true);
    assert_eq!(v["type"], "Offer");

    let request = data("request-research.json");
    let out = allmende(&[
        "policy",
        "evaluate",
        "--policy",
        path(&policy_file),
        "--request",
        path(&request),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["decision"], "permit");
    assert_eq!(v["obligations"][0]["action"], "attribute");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["decision", "obligations", "rules"]);

    let mut other: Value =
        serde_json::from_str(&std::fs::read_to_string(&request).expect("read")).expect("json");
    other["purpose"] = "https://w3id.org/dpv#Marketing".into();
    let other_file = dir.path().join("r.json");
    std::fs::write(&other_file, other.to_string()).expect("write");
    let out = allmende(&[
        "policy",
        "evaluate",
        "--policy",
        path(&policy_file),
        "--request",
        path(&other_file),
    ]);
    assert_eq!(stdout_json(&out)["decision"], "not_applicable");

    let bad = dir.path().join("bad.jsonld");
    std::fs::write(&bad, policy.to_string().replace("\"use\"", "\"print\"")).expect("write");
    let out = allmende(&["policy", "check", path(&bad)]);
    assert!(!out.status.success());
    assert!(
        stdout_json(&out)["error"]
            .as_str()
            .expect("error")
            .contains("print")
    );
}

#[test]
fn members_negotiate_agreements_and_every_decision_is_audited() {
    let mut provider = TestNode::init("Stadt Würzburg", "09663");
    let mut consumer = TestNode::init("Stadt Münster", "05515");
    provider.start();
    consumer.start();
    federate(&[&provider, &consumer], "test");

    let csv = provider.dir.path().join("air.csv");
    allmende(&[
        "sample",
        "air-quality",
        "--district-key",
        "09663",
        "--days",
        "1",
        "-o",
        path(&csv),
    ]);
    let out = provider.ok(&[
        "dataset",
        "import",
        path(&csv),
        "--slug",
        "air",
        "--title",
        "Luftqualität",
        "--description",
        "NO2 und PM10",
        "--license",
        "dl-by-de/2.0",
        "--theme",
        "ENVI",
        "--contact-email",
        "umwelt@wuerzburg.de",
    ]);
    assert!(out.contains("imported"), "{out}");
    let offer = data("offer-research.jsonld");
    assert!(
        provider
            .ok(&["policy", "attach", "air", path(&offer)])
            .contains("version 1")
    );
    let shown: Value =
        serde_json::from_str(&provider.ok(&["policy", "show", "air"])).expect("json");
    let dataset_id = provider.get("/api/v1/datasets/air")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        shown["policy"]["target"],
        format!("urn:allmende:dataset:{dataset_id}")
    );
    assert!(
        shown["policy"]["issuer"]
            .as_str()
            .expect("issuer")
            .starts_with("did:key:")
    );
    provider.ok(&["dataset", "publish", "air"]);

    // The consumer sees the policy reference in the replicated catalog …
    let deadline = Instant::now() + Duration::from_secs(10);
    let hit = loop {
        let found = consumer.get("/api/v1/catalog?q=Luftqualit%C3%A4t");
        if found["total"] == 1 {
            break found["hits"][0].clone();
        }
        assert!(Instant::now() < deadline, "catalog entry did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    };
    let provider_id = hit["publisher"].as_str().expect("publisher").to_owned();

    // … and negotiates an agreement over libp2p.
    let out = consumer.ok(&[
        "agreement",
        "negotiate",
        "--provider",
        &provider_id,
        "--dataset",
        &dataset_id,
    ]);
    assert!(out.contains("concluded"), "{out}");
    let mine = consumer.get("/api/v1/agreements");
    let theirs = provider.get("/api/v1/agreements");
    assert_eq!(mine["agreements"][0]["role"], "consumer");
    assert_eq!(theirs["agreements"][0]["role"], "provider");
    assert_eq!(mine["agreements"][0]["id"], theirs["agreements"][0]["id"]);

    // A dataset without a policy: refused.
    let out = consumer.cli(&[
        "agreement",
        "negotiate",
        "--provider",
        &provider_id,
        "--dataset",
        "no-such-dataset",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let id = mine["agreements"][0]["id"].as_str().expect("id").to_owned();
    assert!(
        consumer
            .ok(&["agreement", "revoke", &id, "--reason", "study finished"])
            .contains("revoked")
    );

    assert_eq!(provider.get("/api/v1/audit")["size"], 1);
    assert!(
        provider
            .ok(&["audit", "verify"])
            .contains("intact: 1 entries")
    );
    provider.stop(libc::SIGTERM, Duration::from_secs(10));
    let offline = allmende(&[
        "audit",
        "verify",
        "--offline",
        "--data-dir",
        provider.data_dir(),
    ]);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert!(String::from_utf8_lossy(&offline.stdout).contains("intact"));
}

/// The member `member`'s part of a federated answer.
fn member_part<'a>(answer: &'a Value, member: &str) -> &'a Value {
    answer["members"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["member"] == member))
        .unwrap_or_else(|| panic!("no member `{member}` in {answer}"))
}

#[test]
fn a_policy_can_require_an_agreement_for_queries() {
    let args = [
        "--sync-interval-ms",
        "500",
        "--contact-email",
        "daten@example.org",
    ];
    let mut provider = TestNode::init_at("Stadt Würzburg", "09663", "127.0.0.1", &args);
    let mut consumer = TestNode::init_at("Stadt Münster", "05515", "127.0.0.1", &args);
    provider.start();
    consumer.start();
    federate(&[&provider, &consumer], "test");
    provider.import_air(&AirSample {
        slug: "air",
        title: "Luftqualität",
        district_key: "09663",
        days: 1,
        stations: 2,
        conforms: false,
    });
    provider.attach_policy("air", "offer-agreement.jsonld");
    provider.ok(&["dataset", "publish", "air"]);
    let hit = poll(
        "catalog entry replicated",
        Duration::from_secs(20),
        || {
            let found = consumer.get("/api/v1/catalog?theme=ENVI");
            (found["total"] == 1).then(|| found["hits"][0].clone())
        },
        || consumer.get("/api/v1/catalog?theme=ENVI").to_string(),
    );
    let provider_id = hit["publisher"].as_str().expect("publisher").to_owned();
    let dataset_id = provider.get("/api/v1/datasets/air")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ask = || {
        let (status, answer) = consumer.post(
            "/api/v1/query",
            &json!({ "sql": "SELECT station, count(*) AS n FROM wuerzburg.air GROUP BY station ORDER BY station" }),
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };

    // Without an agreement: denied, saying what is missing.
    let answer = ask();
    let part = member_part(&answer, "wuerzburg");
    assert_eq!(part["status"], "denied", "{answer}");
    assert_eq!(part["code"], "agreement-required", "{answer}");
    assert!(
        part["reason"]
            .as_str()
            .is_some_and(|r| r.contains("agreement negotiate")),
        "{answer}"
    );
    assert_eq!(answer["rows"], json!([]), "{answer}");

    // Under an agreement: answered, every row.
    let out = consumer.ok(&[
        "agreement",
        "negotiate",
        "--provider",
        &provider_id,
        "--dataset",
        &dataset_id,
    ]);
    assert!(out.contains("concluded"), "{out}");
    let answer = ask();
    assert_eq!(
        member_part(&answer, "wuerzburg")["status"],
        "ok",
        "{answer}"
    );
    assert_eq!(
        answer["rows"],
        json!([{ "station": "09663-L01", "n": 24 }, { "station": "09663-L02", "n": 24 }]),
        "{answer}"
    );

    // The provider revokes it: its own next decision refuses, whatever the consumer still
    // holds; once the revocation has reached the consumer, it asks under the offer again.
    let theirs = provider.get("/api/v1/agreements");
    let id = theirs["agreements"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        provider
            .ok(&["agreement", "revoke", &id, "--reason", "study finished"])
            .contains("revoked")
    );
    let answer = ask();
    assert_eq!(
        member_part(&answer, "wuerzburg")["status"],
        "denied",
        "{answer}"
    );
    assert_eq!(answer["rows"], json!([]), "{answer}");
    poll(
        "the consumer holds the revocation",
        Duration::from_secs(20),
        || (member_part(&ask(), "wuerzburg")["code"] == "agreement-required").then_some(()),
        || ask().to_string(),
    );

    // Each decision is in the provider's audit log.
    let entries = provider.get("/api/v1/audit/entries?limit=100")["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let queries: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "query")
        .filter_map(|e| e["decision"].as_str())
        .collect();
    assert_eq!(&queries[..3], ["deny", "permit", "deny"], "{entries:?}");
}
