//! Fault injection for PostgreSQL clients.
//!
//! `chaos` puts a fault-injecting TCP proxy between a connection pool and PostgreSQL, runs
//! scenarios against the pool, and reports what happened.
//!
//! # Layout
//! - [`api`]: the HTTP API, compatible with Toxiproxy 2.x (`chaos serve`).
//! - [`error`]: the library's typed [`Error`].
//! - [`fuzzing`]: the properties of the API that the fuzz target and its corpus tests check.
//! - [`controller`]: one trait to set faults, on the embedded proxy or on any Toxiproxy-API
//!   server (`TOXIPROXY_URL`) through our async client.
//! - [`postgres`]: throwaway PostgreSQL clusters (find binaries, initdb, start, crash, restart),
//!   or the server at `DATABASE_URL`.
//! - [`proxy`]: the fault-injecting TCP proxy (Toxiproxy's model: proxies, toxics, streams,
//!   toxicity), in process.
//! - [`rng`]: the one seeded random generator that makes a run replayable.
//! - [`workload`]: steady workers and bursts, the load of the suite and the soak.
//! - [`measure`]: this process's memory and descriptors, and the one percentile.
//! - [`report`]: the report model and its renderers (text, Markdown, JSON, SVG, HTML).
//! - [`scenario`]: validation scenarios, the fault matrix, the pools under test.
//! - [`signals`]: `SIGINT`, `SIGTERM` and `SIGHUP`, which end a run early and cleanly.
//! - [`suite`]: `chaos run`: plan, progress, report files.
//! - [`soak`]: `chaos soak`: a long mixed workload with random faults and a leak verdict.
//! - [`smoke`]: a quick start/crash/restart check of the throwaway cluster.

/// A boxed future, so the crate's async traits stay object safe.
pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub mod api;
pub mod cli;
pub mod controller;
pub mod error;
pub mod exec;
pub mod fault;
pub mod fuzzing;
pub mod kernel;
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
