//! Replays the kept fuzz corpora (`fuzz/corpus/<target>/`) and the fixed crash inputs
//! (`fuzz/regressions/<target>/`) through the targets, on the stable toolchain; one thread per
//! directory.
use std::path::{Path, PathBuf};

use allmende_fuzzing::TARGETS;

/// A directory of inputs and the target they are for.
type Inputs = (PathBuf, fn(&[u8]));

/// Every input directory with its target.
fn directories() -> Vec<Inputs> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dirs) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for dir in dirs {
            let dir = dir.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let (_, target) = TARGETS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{}: no target named `{name}`", dir.display()));
            out.push((dir, *target));
        }
    }
    out
}

#[test]
fn corpora_and_regressions_replay_without_panics() {
    let dirs = directories();
    assert!(!dirs.is_empty(), "no corpus under fuzz/");
    let replayed: usize = std::thread::scope(|s| {
        let running: Vec<_> = dirs
            .iter()
            .map(|(dir, target)| {
                s.spawn(move || {
                    let mut n = 0;
                    for file in std::fs::read_dir(dir).unwrap() {
                        let file = file.unwrap().path();
                        let data = std::fs::read(&file).unwrap();
                        let replay = std::panic::catch_unwind(|| target(&data));
                        assert!(replay.is_ok(), "{} panicked", file.display());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert!(replayed > 0);
}
