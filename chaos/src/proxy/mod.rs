//! The fault-injecting TCP proxy: Toxiproxy's model (proxies, toxics, upstream/downstream,
//! toxicity), in process.
//!
//! # Examples
//! ```no_run
//! # async fn f() -> Result<(), chaos::proxy::ProxyError> {
//! use chaos::proxy::{Proxies, ProxyConfig, Toxic, ToxicKind, Stream};
//! let proxies = Proxies::new(42); // the seed makes jitter, toxicity and slicing replayable
//! let proxy = proxies.create(ProxyConfig::new("postgres", "127.0.0.1:0", "127.0.0.1:5432"))?;
//! println!("connect to {}", proxy.listen_addr().unwrap());
//! proxy.add_toxic(Toxic { name: "slow".into(),
//!                         kind: ToxicKind::Latency(chaos::proxy::toxics::Latency { latency: 100, jitter: 10 }),
//!                         stream: Stream::Downstream, toxicity: 1.0 })?;
//! proxy.disable(); // the "down" fault: listener closed, live connections cut
//! proxy.enable()?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `toxic`: a toxic on a proxy: name, stream, toxicity, JSON, defaults.
//! - `stage`: the pipeline model every data toxic implements.
//! - `toxics/`: one file per toxic type (its attributes and what it does), and the verdicts
//!   of connection-level toxics.
//! - `link`: one direction of one connection; `splice`: its zero-copy path when the direction
//!   has no toxic (Linux).
//! - `config`, `error`: a proxy's settings, counters and toxics in force; what it refuses.
//! - `instance`: [`Proxy`] (listener, connections, toxics, counters); `proxies`: [`Proxies`].
//! - `timed`, `populate`: toxics with a duration, and the API's populate.
//! - this file: the layout and what the crate uses, nothing else.

mod config;
mod direction;
mod error;
mod forward;
mod instance;
pub mod link;
mod populate;
mod proxies;
#[cfg(target_os = "linux")]
pub mod sockmap;
#[cfg(target_os = "linux")]
mod splice;
pub mod stage;
mod timed;
pub mod toxic;
pub mod toxics;

pub use config::{ProxyConfig, ProxyStats, ToxicEntry, ToxicSet};
pub use error::{ProxyError, check_listen};
pub use instance::Proxy;
pub use proxies::Proxies;
pub use timed::requested_duration;
pub use toxic::{Stream, Toxic, ToxicJson, ToxicKind};
