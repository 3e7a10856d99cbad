#![no_main]
//! cargo-fuzz target `import_json`: see [`allmende_fuzzing::import_json`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::import_json(data));
