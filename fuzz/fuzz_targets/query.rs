//! Fuzz target: see `pooldns::fuzzing::respond_to`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pooldns::fuzzing::respond_to(data));
