#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proto::fuzzing::mse_responder(data));
