//! URL redaction: no password tokio-postgres would read survives `pool::redact_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        pool::testing::oracles::redaction(s);
    }
});
