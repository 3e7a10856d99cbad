#![no_main]
//! cargo-fuzz target `policy_cbor`: see [`allmende_fuzzing::policy_cbor`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::policy_cbor(data));
