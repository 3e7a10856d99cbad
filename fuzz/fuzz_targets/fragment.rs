#![no_main]
//! cargo-fuzz target `fragment`: see [`allmende_fuzzing::fragment`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::fragment(data));
