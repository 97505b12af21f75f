//! Fault injection for PostgreSQL clients.
//!
//! `chaos` puts a fault-injecting TCP proxy between a connection pool and PostgreSQL, runs
//! scenarios against the pool, and reports what happened.
//!
//! # Layout
//! Data flows one way: faults, then the suite, plans and the soak that use them, then the
//! reports; `chaos/tests/layout.rs` fails on an import circle (between files or between these
//! modules) and on a source file over 600 lines. From the bottom up:
//!
//! **Machinery** (knows no pool under test and no report)
//! - [`rng`]: the one seeded random generator that makes a run replayable.
//! - [`proxy`]: the fault-injecting TCP proxy (Toxiproxy's model: proxies, toxics, streams,
//!   toxicity), in process; `proxy/toxics/` one file per toxic.
//! - [`api`]: the HTTP API, compatible with Toxiproxy 2.x (`chaos serve`); [`fuzzing`]: the
//!   properties of the API that the fuzz target and its corpus tests check.
//! - [`controller`]: one trait to set faults, on the embedded proxy or on any Toxiproxy-API
//!   server (`TOXIPROXY_URL`); [`toxictl`]: `chaos proxy` and `chaos toxic`'s verbs.
//! - [`kernel`]: faults the kernel makes (nftables rules in a table of the run's own).
//! - [`postgres`]: throwaway PostgreSQL clusters (binaries, process, cluster, standby,
//!   PgBouncer, the database a run uses); [`tls`]: certificates for clusters that speak TLS.
//! - [`measure`], [`workload`], [`signals`]: this process's figures, the load the suite and
//!   the soak put on a pool, and the signals that end a run cleanly; [`lag`]: the run's own
//!   scheduling lag, which timing criteria are judged against.
//!
//! **Faults**
//! - [`fault`]: the fault library: what a fault is, the catalogue (the matrix, PgBouncer's
//!   faults, the service family's), how each is made and healed, and where ([`fault::Env`]).
//! - [`plan`]: fault plans (TOML) on a timeline, run on the fault library.
//!
//! **Pools under test**
//! - [`peers`]: the [`peers::Subject`] trait, [`peers::PoolKind`], the application handlers,
//!   and one file per pool (ours, deadpool, bb8, sqlx), listed once in `peers!`.
//!
//! **Runs**
//! - [`scenario`]: one file per scenario family, listed once in `families!`, which makes the
//!   [`scenario::Scenario`] enum; `runner` (arena, timing, recorder, the fault runner) and
//!   `judge` (criteria) are siblings the families import.
//! - [`suite`]: `chaos run`: what runs in which order, progress, report files.
//! - [`soak`]: `chaos soak`: a long mixed workload with random faults and a leak verdict.
//! - [`exec`]: `chaos exec`: any program under a fault plan, with its own timeline.
//! - [`smoke`]: a quick start/crash/restart check of the throwaway cluster.
//!
//! **Reports**
//! - [`report`]: the report model (which pool is ours, why a scenario could not run, as a
//!   type), one file per format (listed once in `renderers!`), the scenario timelines and
//!   the SVG toolkit every picture shares.
//!
//! **The command line**
//! - [`cli`]: every command's arguments and its driver; `src/bin/chaos.rs` only parses and
//!   hands the command over.
//! - [`error`]: the library's typed [`Error`].

/// A boxed future, so the crate's async traits stay object safe.
pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub mod api;
pub mod cli;
pub mod controller;
pub mod error;
pub mod exec;
pub mod fault;
pub mod fuzzing;
pub mod hosts;
pub mod kernel;
pub mod lag;
pub mod measure;
pub mod peers;
pub mod plan;
pub mod postgres;
pub mod proxy;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod signals;
pub mod smoke;
pub mod soak;
pub mod suite;
pub mod tls;
pub mod toxictl;
pub mod workload;

pub use error::{Error, Result, UsageError};
