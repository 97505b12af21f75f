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
//! - `renderer`: what a format is; `text`, `markdown`, `json`, `html`: one format each, listed
//!   once in `renderers!`.
//! - `svg`: a scenario's timeline; `svgkit`: the SVG toolkit it shares with the soak's and
//!   `chaos exec`'s pictures.
//! - `unavailable`: why a scenario could not be measured, as a type.
//! - `repeats`: `--repeat N`: passes out of N per criterion, failing seeds, flaky timing,
//!   the spread of each timing figure.

pub mod model;
pub mod renderer;
pub mod repeats;
pub mod run;
pub mod svg;
pub mod svgkit;
pub mod unavailable;

/// Declares the renderer modules and lists them: a new format is one more name.
macro_rules! renderers {
    ($($renderer:ident),+ $(,)?) => {
        $(pub mod $renderer;)+
        /// Every format of the run's report, each written to its file.
        pub const RENDERERS: &[&Renderer] = &[$(&$renderer::RENDERER),+];
    };
}

renderers!(text, markdown, json, html);

pub use renderer::Renderer;

pub use model::*;
pub use repeats::{CriterionTally, RepeatSummary, RepeatTables, Spread};
pub use run::{ChaosReport, RunVerdict};
pub use unavailable::{Unavailable, UnavailableScenario};

#[cfg(test)]
pub(crate) mod tests;
