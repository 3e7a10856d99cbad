//! Conformance with the W3C ODRL formal-semantics examples and the Catena-X profile samples,
//! read from ../shared/odrl (skipped with a message when that directory is absent).
use std::path::{Path, PathBuf};

use allmende_policy::cli_json;
use serde_json::{Value, json};

/// The package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn shared() -> Option<PathBuf> {
    let p = manifest_dir().join("../../shared/odrl");
    if p.is_dir() {
        Some(p)
    } else {
        println!(
            "SKIPPED: {} is absent (CI has ../shared beside the checkout)",
            p.display()
        );
        None
    }
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
    out.sort();
}

/// Each formal-semantics policy: supported (its requests must give the reported answer) or
/// refused naming the construct.
#[test]
fn w3c_formal_semantics() {
    let Some(root) = shared() else { return };
    let expected: &[(&str, Option<&str>)] = &[
        ("policyA1.json", None),
        ("policyA2.json", Some("`archive`")),
        ("policyB1.json", Some("`odrl:print`")),
        ("policyC1.json", Some("`play`")),
        ("policyC2.json", Some("`play`")),
    ];
    let mut all = Vec::new();
    files(&root.join("w3c-formal-semantics/examples"), &mut all);
    let policies: Vec<_> = all
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("policy")
        })
        .collect();
    assert_eq!(policies.len(), expected.len());
    let mut evaluated = 0;
    for path in policies {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no expectation for {name}"))
            .1;
        let text = std::fs::read_to_string(path).unwrap();
        match (cli_json::check(&text), want) {
            (Err(e), Some(construct)) => assert!(
                e.to_string().contains(construct),
                "{name}: `{e}` should name {construct}"
            ),
            (Err(e), None) => panic!("{name} should be supported: {e}"),
            (Ok(_), Some(c)) => panic!("{name} should be refused naming {c}"),
            (Ok(_), None) => {
                let dir = path.parent().unwrap();
                let mut cases = Vec::new();
                files(dir, &mut cases);
                for req_path in cases.iter().filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("evaluationrequest")
                }) {
                    let er = read(req_path);
                    let report_path = cases
                        .iter()
                        .find(|p| {
                            p.parent() == req_path.parent()
                                && p.file_name()
                                    .unwrap()
                                    .to_string_lossy()
                                    .starts_with("compliancereport")
                        })
                        .unwrap();
                    let report = read(report_path);
                    let control = report
                        .as_object()
                        .unwrap()
                        .values()
                        .find_map(|v| v.get("report:controlState").and_then(Value::as_str))
                        .unwrap();
                    let request = json!({
                        "action": er["evaluatedAction"].as_str().unwrap().trim_start_matches("odrl:"),
                        "target": er["evaluatedTarget"],
                        "time": er["requestParameters"]["value"]["@value"],
                        "principal": {"org": er["evaluatedParty"]},
                    });
                    let out = cli_json::evaluate(&text, &request.to_string(), None).unwrap();
                    let permit = out["decision"] == "permit";
                    assert_eq!(
                        permit,
                        control == "report:Permit",
                        "{}: {out}",
                        req_path.display()
                    );
                    evaluated += 1;
                }
            }
        }
    }
    assert_eq!(evaluated, 2);
}

fn with_odrl_context(mut doc: Value) -> Value {
    doc["@context"] = json!("http://www.w3.org/ns/odrl.jsonld");
    doc
}

/// Catena-X samples: valid Catena-X, but outside this profile, so each is refused naming the
/// unpinned context and then, with the W3C context, the first Catena-X construct.
#[test]
fn catena_x_samples_are_refused_by_name() {
    let Some(root) = shared() else { return };
    let mut all = Vec::new();
    files(&root.join("cx-odrl-profile/schema/samples"), &mut all);
    let mut checked = 0;
    for path in &all {
        let doc = read(path);
        let name = path.display().to_string();
        let doc = if doc.get("@type").is_some() {
            let err = cli_json::check(&doc.to_string()).unwrap_err().to_string();
            assert!(err.contains("`https://w3id.org/catenax/"), "{name}: {err}");
            with_odrl_context(doc)
        } else {
            // A constraint sample: wrap it into a policy.
            json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "uid": "urn:cx", "target": "urn:ds",
                   "permission": [{"action": "use", "constraint": [doc]}]})
        };
        let err = cli_json::check(&doc.to_string()).unwrap_err().to_string();
        let named = err
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: `{err}` names nothing"));
        assert!(
            doc.to_string().contains(named),
            "{name}: `{err}` names something not in the document"
        );
        checked += 1;
    }
    let example = read(&root.join("cx-odrl-profile/example_usage_policy.json"));
    let err = cli_json::check(&example.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`cx-policy:profile2405`"), "{err}");
    assert!(checked >= 30, "{checked}");
}

/// The usage-purpose sample mapped onto the profile (`UsagePurpose` → `purpose`) is accepted
/// and evaluated; mutations of it (the "invalid" samples) are refused naming the construct.
#[test]
fn catena_x_purpose_mapped_and_mutated() {
    let Some(root) = shared() else { return };
    let mut c =
        read(&root.join("cx-odrl-profile/schema/samples/usage-purpose-constraint-sample.json"));
    c["leftOperand"] = json!("purpose");
    let policy = |c: Value| {
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "uid": "urn:cx", "target": "urn:ds",
        "conflict": "prohibit", "permission": [{"uid": "urn:cx:r", "action": "use", "constraint": [c]}]})
    };
    let ok = policy(c.clone()).to_string();
    cli_json::check(&ok).unwrap();
    let req = |p: &str| {
        json!({"action": "read", "target": "urn:ds", "time": "2025-06-01T00:00:00Z", "purpose": p})
            .to_string()
    };
    assert_eq!(
        cli_json::evaluate(&ok, &req("cx.puris.base:1"), None).unwrap()["decision"],
        "permit"
    );
    assert_eq!(
        cli_json::evaluate(&ok, &req("cx.pcf.base:1"), None).unwrap()["decision"],
        "not_applicable"
    );
    let mutations: Vec<(Value, &str)> = vec![
        (
            {
                let mut m = c.clone();
                m.as_object_mut().unwrap().remove("operator");
                m
            },
            "`operator`",
        ),
        (
            {
                let mut m = c.clone();
                m["operator"] = json!("isA");
                m
            },
            "`isA`",
        ),
        (
            {
                let mut m = c.clone();
                m["operator"] = json!("hasPart");
                m
            },
            "`hasPart`",
        ),
        (
            {
                let mut m = c.clone();
                m["operator"] = json!("lt");
                m
            },
            "`lt`",
        ),
        (
            {
                let mut m = c.clone();
                m["rightOperand"] = json!([]);
                m
            },
            "`purpose`",
        ),
        (
            {
                let mut m = c.clone();
                m["unit"] = json!("x");
                m
            },
            "`unit`",
        ),
        (
            {
                let mut m = c.clone();
                m["leftOperand"] = json!("UsagePurpose");
                m
            },
            "`UsagePurpose`",
        ),
        (json!({"andSequence": [c.clone()]}), "`andSequence`"),
        (
            json!({"leftOperand": "payAmount", "operator": "eq", "rightOperand": 5}),
            "`payAmount`",
        ),
    ];
    for (m, construct) in mutations {
        let err = cli_json::check(&policy(m.clone()).to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(construct),
            "{m}: `{err}` should name {construct}"
        );
    }
}
