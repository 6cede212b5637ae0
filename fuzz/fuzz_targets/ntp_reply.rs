//! Fuzz target: see `pooldns::fuzzing::parse_ntp_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pooldns::fuzzing::parse_ntp_reply(data));
