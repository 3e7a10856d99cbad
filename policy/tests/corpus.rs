//! The corpus in Cedar's JsonTest shape: `tests/corpus/*.json`, each
//! `{description, policies, should_validate, error_contains?, requests: [{description, request,
//! state?, decision, reason, obligations}]}`, run through the stable JSON interface.
use std::path::PathBuf;

use allmende_policy::cli_json;
use serde_json::Value;

/// The package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

#[test]
fn corpus() {
    let dir = manifest_dir().join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut requests = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let test: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let policies = test["policies"].to_string();
        if test["should_validate"] == false {
            let err = cli_json::parse_policies(&policies)
                .expect_err(&name)
                .to_string();
            let want = test["error_contains"].as_str().unwrap();
            assert!(
                err.contains(want),
                "{name}: error `{err}` does not name {want}"
            );
            continue;
        }
        for case in test["requests"].as_array().unwrap() {
            requests += 1;
            let desc = format!("{name}: {}", case["description"]);
            let state = case.get("state").map(Value::to_string);
            let out = cli_json::evaluate(&policies, &case["request"].to_string(), state.as_deref())
                .unwrap_or_else(|e| panic!("{desc}: {e}"));
            assert_eq!(out["decision"], case["decision"], "{desc}: {out}");
            assert_eq!(out["rules"], case["reason"], "{desc}: {out}");
            let actions: Vec<Value> = out["obligations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["action"].clone())
                .collect();
            assert_eq!(Value::Array(actions), case["obligations"], "{desc}: {out}");
        }
    }
    assert!(
        files.len() >= 10 && requests >= 40,
        "{} files, {requests} requests",
        files.len()
    );
    println!("corpus: {} files, {requests} requests", files.len());
}
