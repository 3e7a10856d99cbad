//! The binary's own command-line surface. Building this test also builds the `allmende` binary
//! that the black-box tests in `tests/` start (`cargo test --workspace` builds a package's
//! binaries only for that package's integration tests).

use std::process::Command;

fn allmende(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_allmende"))
        .args(args)
        .env_remove("ALLMENDE_API")
        .env_remove("ALLMENDE_TOKEN")
        .output()
        .expect("run allmende")
}

#[test]
fn help_names_the_node_and_client_commands() {
    let out = allmende(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "init",
        "run",
        "dataset",
        "sql",
        "query",
        "policy",
        "federation",
    ] {
        assert!(text.contains(command), "`{command}` missing from:\n{text}");
    }
}

#[test]
fn init_without_a_district_key_says_what_it_needs_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let out = allmende(&[
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "init",
        "--name",
        "Stadt Münster",
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--district-key"), "{text}");
    assert!(
        !data.join("node.key").exists(),
        "nothing is written on a refused init"
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = allmende(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
