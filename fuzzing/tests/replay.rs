//! Replays the kept fuzz corpora (`fuzz/corpus/<target>/`) and the fixed crash inputs
//! (`fuzz/regressions/<target>/`) through the targets, on the stable toolchain.
use std::path::Path;

use allmende_fuzzing::TARGETS;

#[test]
fn corpora_and_regressions_replay_without_panics() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
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
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap().path();
                let data = std::fs::read(&file).unwrap();
                eprintln!("{}", file.display());
                target(&data);
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no corpus under {}", fuzz.display());
}
