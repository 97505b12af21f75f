//! Fault injection for PostgreSQL clients.
//!
//! `chaos` puts a fault-injecting TCP proxy between a connection pool and PostgreSQL, runs
//! scenarios against the pool, and reports what happened.
//!
//! # Layout
//! - [`postgres`]: throwaway PostgreSQL clusters (find binaries, initdb, start, crash, restart),
//!   or the server at `DATABASE_URL`.
//! - [`smoke`]: the smoke run behind `chaos run` until the full suite lands.

pub mod postgres;
pub mod smoke;
