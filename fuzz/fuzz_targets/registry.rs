//! Fuzz target: see `pooldns::fuzzing::load_registry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pooldns::fuzzing::load_registry(data));
