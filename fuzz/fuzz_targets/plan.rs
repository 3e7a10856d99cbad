#![no_main]
//! cargo-fuzz target `plan`: see [`allmende_fuzzing::plan`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::plan(data));
