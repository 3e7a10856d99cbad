#![no_main]
//! cargo-fuzz target `messages`: see [`allmende_fuzzing::messages`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::messages(data));
