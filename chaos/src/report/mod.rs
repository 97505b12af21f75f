//! The report of a chaos run: one serde model ([`ChaosReport`]) and its renderers (terminal
//! table, Markdown, JSON, an SVG timeline per scenario, an `index.html` that shows them
//! together).
//!
//! The history is recorded as Jepsen does: every request is an [`Op`] with its start and end
//! and an outcome, `ok`, `fail` (it definitely did not happen; with the error kind) or `info`
//! (unknown: the connection died mid-query, or it never answered); every fault is a window.

//!
//! # Layout
//! - `model`: the serde model and the run's verdict, with its JSON form.
//! - `text`, `markdown`, `html`, `svg`: one renderer each (`svg` also holds the SVG toolkit
//!   the soak's and `chaos exec`'s pictures use).

pub mod html;
mod markdown;
pub mod model;
pub mod svg;
pub mod svgkit;
mod text;
pub mod unavailable;

pub use model::*;
pub use unavailable::{Unavailable, UnavailableScenario};

#[cfg(test)]
pub(crate) mod tests;
