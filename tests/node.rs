//! Black-box tests of one node: real `allmende` processes, real signals, real files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use allmende_e2e::{TestNode, allmende};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn init_makes_a_private_key_and_never_overwrites_it() {
    let node = TestNode::init("Stadt Münster", "05515");
    let key = node.dir.path().join("node.key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(node.dir.path().join("allmende.toml").exists());
    assert!(node.dir.path().join("db").is_dir());
    let before = std::fs::read(&key).expect("key");

    let again = allmende(&[
        "init",
        "--data-dir",
        node.data_dir(),
        "--name",
        "Other",
        "--district-key",
        "05116",
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwritten"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&key).expect("key"), before);

    let bad = allmende(&[
        "init",
        "--data-dir",
        "/tmp/x",
        "--name",
        "A",
        "--district-key",
        "123",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("5-digit"), "{}", stderr(&bad));
}

#[test]
fn runs_serves_and_stops_cleanly_keeping_its_data() {
    let mut node = TestNode::init("Stadt Würzburg", "09663");
    let started = Instant::now();
    node.start();
    let health = node.get("/healthz");
    assert_eq!(health["status"], "ok");
    eprintln!("start-up to first served request: {:?}", started.elapsed());
    let info = node.get("/api/v1/node");
    assert_eq!(info["name"], "Stadt Würzburg");
    assert!(
        info["did"]
            .as_str()
            .expect("did")
            .starts_with("did:key:z6Mk")
    );
    let peer_id = info["peer_id"].clone();

    let csv = node.dir.path().join("districts.csv");
    allmende(&["sample", "districts", "-o", csv.to_str().expect("path")]);
    let out = node.ok(&[
        "dataset",
        "import",
        csv.to_str().expect("path"),
        "--title",
        "Kreise 2018",
        "--description",
        "Fläche und Bevölkerung",
        "--license",
        "cc-by/4.0",
        "--theme",
        "REGI",
        "--slug",
        "districts",
    ]);
    assert!(out.contains("401 rows"), "{out}");

    let status = node.stop(libc::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "SIGTERM exit: {status:?}");

    node.start();
    assert_eq!(node.get("/api/v1/node")["peer_id"], peer_id);
    let table = node.ok(&["sql", "SELECT name FROM districts WHERE ags = '09663'"]);
    assert!(table.contains("Würzburg"), "{table}");
    let invalid = node.cli(&["dataset", "validate", "districts"]);
    assert!(!invalid.status.success());
    let listed = String::from_utf8_lossy(&invalid.stdout);
    assert!(
        listed.contains("- dcat:contactPoint") && !listed.contains("dct:title"),
        "{listed}"
    );
    node.ok(&[
        "dataset",
        "update",
        "districts",
        "--contact-email",
        "opendata@wuerzburg.de",
    ]);
    assert!(
        node.ok(&["dataset", "validate", "districts"])
            .starts_with("valid")
    );
    let exported = node.dir.path().join("out.csv");
    node.ok(&[
        "dataset",
        "export",
        "districts",
        "--format",
        "csv",
        "-o",
        exported.to_str().expect("path"),
    ]);
    assert_eq!(
        std::fs::read_to_string(&exported)
            .expect("export")
            .lines()
            .count(),
        402
    );
    let status = node.stop(libc::SIGINT, Duration::from_secs(10));
    assert!(status.success(), "SIGINT exit: {status:?}");
}

#[test]
fn the_cli_names_each_problem_and_exits_non_zero() {
    let mut node = TestNode::init("Stadt Münster", "05515");
    node.start();
    let dir = node.dir.path();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a;b\n1;2\n3\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "dataset".into(),
                "import".into(),
                dir.join("missing.csv").display().to_string(),
            ],
            "cannot read",
        ),
        (
            vec!["dataset".into(), "import".into(), bad.display().to_string()],
            "line 3 has 1 fields",
        ),
        (
            vec![
                "dataset".into(),
                "import".into(),
                bad.display().to_string(),
                "--license".into(),
                "nope".into(),
            ],
            "licence",
        ),
        (vec!["sql".into(), "SELEC".into()], "syntax"),
        (
            vec!["sql".into(), "SELECT * FROM nothing".into()],
            "nothing",
        ),
        (
            vec!["dataset".into(), "show".into(), "nothing".into()],
            "no dataset",
        ),
        (
            vec!["dataset".into(), "validate".into(), "nothing".into()],
            "HTTP 404",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = node.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: `{}` lacks `{needle}`",
            stderr(&out)
        );
    }
    let unreachable = allmende(&["--api", "http://127.0.0.1:9", "dataset", "list"]);
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("cannot reach"),
        "{}",
        stderr(&unreachable)
    );
    assert!(node.ok(&["dataset", "list"]).contains("no datasets"));
}

/// Kills the node with SIGKILL while it converts a large upload that would replace version 1 of
/// a dataset, restarts it, and checks that nothing is half-written and nothing else was lost.
#[test]
fn sigkill_during_an_import_leaves_no_half_written_dataset() {
    let mut node = TestNode::init("Stadt Mönchengladbach", "05116");
    node.start();
    let dir = node.dir.path().to_path_buf();
    let small = dir.join("traffic-small.csv");
    let big = dir.join("traffic-big.csv");
    let path = |p: &Path| p.to_str().expect("path").to_owned();
    allmende(&[
        "sample",
        "traffic",
        "--district-key",
        "05116",
        "--days",
        "2",
        "-o",
        &path(&small),
    ]);
    allmende(&[
        "sample",
        "traffic",
        "--district-key",
        "05116",
        "--days",
        "365",
        "--stations",
        "120",
        "-o",
        &path(&big),
    ]);
    node.ok(&["dataset", "import", &path(&small), "--slug", "traffic"]);
    let districts = dir.join("districts.csv");
    allmende(&["sample", "districts", "-o", &path(&districts)]);
    node.ok(&[
        "dataset",
        "import",
        &path(&districts),
        "--slug",
        "districts",
    ]);
    let before_list = node.get("/api/v1/datasets");
    let before_files = files_under(&dir.join("datasets"));
    let before_sum = node.ok(&[
        "sql",
        "SELECT SUM(vehicles) AS s FROM traffic",
        "--format",
        "json",
    ]);

    // Upload the big file as a new version and kill the node as soon as conversion has begun.
    let url = node.url.clone();
    let big_path = path(&big);
    let uploader = std::thread::spawn(move || {
        allmende(&[
            "--api",
            &url,
            "dataset",
            "import",
            &big_path,
            "--version-of",
            "traffic",
        ])
    });
    let tmp = dir.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let converting = std::fs::read_dir(&tmp)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            })
            .unwrap_or(false);
        if converting {
            break;
        }
        assert!(Instant::now() < deadline, "conversion never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    node.stop(libc::SIGKILL, Duration::from_secs(10));
    let upload = uploader.join().expect("uploader");
    assert!(
        !upload.status.success(),
        "the import finished before the kill; make the file larger"
    );
    assert!(
        !files_under(&tmp).is_empty(),
        "the kill left no partial files to recover from"
    );

    node.start();
    assert_eq!(node.get("/api/v1/datasets"), before_list);
    assert_eq!(files_under(&dir.join("datasets")), before_files);
    assert!(files_under(&tmp).is_empty(), "{:?}", files_under(&tmp));
    assert_eq!(
        node.ok(&[
            "sql",
            "SELECT SUM(vehicles) AS s FROM traffic",
            "--format",
            "json"
        ]),
        before_sum
    );
    assert!(
        node.ok(&["sql", "SELECT COUNT(*) FROM districts"])
            .contains("401")
    );

    // And the same import goes through after the restart.
    let out = node.ok(&["dataset", "import", &path(&big), "--version-of", "traffic"]);
    assert!(out.contains("version 2"), "{out}");
    node.stop(libc::SIGTERM, Duration::from_secs(20));
}
