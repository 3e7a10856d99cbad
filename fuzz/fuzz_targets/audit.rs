#![no_main]
//! cargo-fuzz target `audit`: see [`allmende_fuzzing::audit`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::audit(data));
