//! `PoolConfig::from_env` reads the process environment. Alone in its test binary: setting
//! variables is only sound while no other thread reads them.

use std::time::Duration;

#[test]
fn from_env_reads_the_process_environment() {
    // SAFETY: the only test of this binary, before any other thread exists.
    unsafe {
        std::env::set_var("DATABASE_URL", "postgres://app@db:5432/app");
        std::env::set_var("POOL_MAX_SIZE", "17");
        std::env::set_var("POOL_ACQUIRE_TIMEOUT", "3s");
    }
    let config = pool::PoolConfig::from_env().unwrap();
    assert_eq!(config.get_max_size(), 17);
    assert_eq!(config.get_acquire_timeout(), Duration::from_secs(3));
    unsafe { std::env::set_var("POOL_MAX_SIZE", "many") };
    let err = pool::PoolConfig::from_env().unwrap_err();
    assert_eq!(err.problems[0].field, "POOL_MAX_SIZE", "{err}");
}
