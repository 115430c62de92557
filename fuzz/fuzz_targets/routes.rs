//! cargo-fuzz target: see `cognito_gate::fuzz_harness::routes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cognito_gate::fuzz_harness::routes(data));
