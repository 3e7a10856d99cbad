#![no_main]
//! cargo-fuzz target `roster`: see [`allmende_fuzzing::roster`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::roster(data));
