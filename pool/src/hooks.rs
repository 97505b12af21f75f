//! Hooks: code of the application's own at three points of a connection's life, as pgxpool's
//! `AfterConnect` / `BeforeAcquire` / `AfterRelease` and sqlx's `after_connect` /
//! `before_acquire` / `after_release`.
//!
//! Each is async and bounded by a deadline the pool already has: `after_connect` by the
//! connection attempt's, `before_acquire` by the acquire's, `after_release` by
//! `validation_timeout`. A hook that fails, says no or runs out of time closes the connection
//! ([`CloseReason::HookRejected`](crate::CloseReason::HookRejected)); `after_connect`'s error
//! is the connect failure the caller sees.

use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;

/// The future a hook returns: boxed, borrowing the client.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type Hook<Client, T> = Box<dyn for<'a> Fn(&'a Client) -> HookFuture<'a, T> + Send + Sync>;

/// The hooks of one pool.
pub(crate) struct Hooks<Client> {
    pub after_connect: Option<Hook<Client, Result<(), BoxError>>>,
    pub before_acquire: Option<Hook<Client, bool>>,
    pub after_release: Option<Hook<Client, bool>>,
}

impl<Client> Default for Hooks<Client> {
    fn default() -> Self {
        Self {
            after_connect: None,
            before_acquire: None,
            after_release: None,
        }
    }
}
