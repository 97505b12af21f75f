//! Pool configuration from a URL or key=value string, environment variables or JSON: no
//! panic, and no password in any error or `Debug` output.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pool::testing::oracles::config_bytes(data);
});
