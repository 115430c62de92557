//! cargo-fuzz target: see `cognito_gate::fuzz_harness::basic`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cognito_gate::fuzz_harness::basic(data));
