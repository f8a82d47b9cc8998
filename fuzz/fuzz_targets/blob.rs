#![no_main]
// The body lives in hrm-tests (src/fuzzing.rs) so that regression tests run the same code.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hrm_tests::fuzzing::blob(data));
