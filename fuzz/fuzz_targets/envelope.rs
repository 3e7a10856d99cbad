#![no_main]
//! cargo-fuzz target `envelope`: see [`allmende_fuzzing::envelope`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::envelope(data));
