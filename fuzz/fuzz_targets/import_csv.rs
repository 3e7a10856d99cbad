#![no_main]
//! cargo-fuzz target `import_csv`: see [`allmende_fuzzing::import_csv`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::import_csv(data));
