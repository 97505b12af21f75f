//! Planted bugs: a test-only switch that breaks one promise of the pool on purpose, so that CI
//! can prove the chaos suite notices (a verdict that cannot fail is worth nothing).
//!
//! Compiled in only with the `planted-bugs` feature; without it [`planted`] is a constant
//! `false` and the optimiser removes every branch on it. With the feature, the environment
//! variable `POOL_PLANTED_BUG` picks one bug for the whole process:
//!
//! - `session_restore`: a session is returned to the pool as it is, without the reset
//!   (a handler's open transaction or `SET` reaches the next user);
//! - `role_check`: `target_session_attrs` is ignored on connect and on validation (after a
//!   failover, sessions open on a standby, where writes fail);
//! - `fail_fast`: during an outage an acquire waits out its whole timeout instead of failing
//!   at once;
//! - `demoted_writes`: the pool keeps writing where it wrote before a server was demoted: a
//!   write refused as read-only (SQLSTATE 25006) is an ordinary error (the session goes back
//!   to the pool and takes the next writes too), and no session's role is checked, so new
//!   sessions open on the first host of the URL, a standby after a switchover.

/// One of the bugs `POOL_PLANTED_BUG` can switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bug {
    SessionRestore,
    RoleCheck,
    FailFast,
    DemotedWrites,
}

#[cfg(feature = "planted-bugs")]
impl Bug {
    const ALL: [(&'static str, Bug); 4] = [
        ("session_restore", Bug::SessionRestore),
        ("role_check", Bug::RoleCheck),
        ("fail_fast", Bug::FailFast),
        ("demoted_writes", Bug::DemotedWrites),
    ];

    /// The bug the environment asks for; panics on a name it does not know, since a test
    /// that means to plant a bug and plants none would pass for the wrong reason.
    fn chosen() -> Option<Bug> {
        static CHOSEN: std::sync::OnceLock<Option<Bug>> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let name = std::env::var("POOL_PLANTED_BUG").ok()?;
            let name = name.trim();
            if name.is_empty() {
                return None;
            }
            let Some(&(_, bug)) = Self::ALL.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                panic!(
                    "POOL_PLANTED_BUG={name:?} names no planted bug; use one of {}",
                    known.join(", ")
                );
            };
            tracing::warn!(
                bug = name,
                "a planted bug is switched on (POOL_PLANTED_BUG): this pool is broken on purpose, for testing the chaos suite"
            );
            Some(bug)
        })
    }
}

/// Whether `bug` is switched on in this process.
#[cfg(feature = "planted-bugs")]
pub(crate) fn planted(bug: Bug) -> bool {
    Bug::chosen() == Some(bug)
}

/// Whether `bug` is switched on: never, in a build without the `planted-bugs` feature.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub(crate) fn planted(_bug: Bug) -> bool {
    false
}
