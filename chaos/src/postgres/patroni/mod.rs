//! The real HA stack, thrown away after use: etcd and N Patroni nodes (Debian's `etcd-server`
//! and `patroni`), each on a host of its own ([`crate::hosts`]).
//!
//! | host | runs | address |
//! | --- | --- | --- |
//! | `etcd` | etcd (client port 2379) | `10.A.B.10` |
//! | `n1`..`nN` | Patroni (REST 8008) and the PostgreSQL it manages (5432) | `10.A.B.11`.. |
//! | `haproxy` | HAProxy (5000), with [`HaRoute::Haproxy`] only | after the nodes |
//! | this machine | the pools under test, the harness's REST polls | `10.A.B.1` |
//!
//! Every process runs as the unprivileged server user (PostgreSQL refuses root), with its
//! output in the run's directory (`etcd.log`, `nK/patroni.log`), and everything is removed with
//! the hosts: on drop, or by their watchdog when this process dies.
//!
//! # Settings
//! [`HaOptions::default`] follows Patroni's documented minimums: `ttl` 20 s (the leader's
//! lease), `loop_wait` 1 s and `retry_timeout` 5 s (`loop_wait + 2 x retry_timeout = 11 <=
//! ttl`). A leader killed outright is replaced once its lease expires, so about `ttl` after the
//! kill. `synchronous_mode` is [`HaOptions::synchronous`]. Each server commits durably on its
//! own (`synchronous_commit = on`); `fsync` is off, which loses nothing to a killed process
//! (the kernel keeps its page cache), only to a power cut, which no fault here makes.

mod cluster;
mod haproxy;
mod options;
mod rest;
mod rest_calls;

pub use cluster::HaCluster;
pub use haproxy::HAPROXY_PORT;
pub use options::{HaError, HaOptions, HaRoute};
pub use rest::NodeState;
