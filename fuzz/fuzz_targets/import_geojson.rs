#![no_main]
//! cargo-fuzz target `import_geojson`: see [`allmende_fuzzing::import_geojson`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| allmende_fuzzing::import_geojson(data));
