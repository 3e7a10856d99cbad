#![no_main]
//! cargo-fuzz target `sql`: see [`allmende_fuzzing::sql`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::sql(data));
