#![no_main]
//! cargo-fuzz target `policy_jsonld`: see [`allmende_fuzzing::policy_jsonld`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::policy_jsonld(data));
