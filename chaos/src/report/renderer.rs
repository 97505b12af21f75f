//! What a renderer of the run's report is: a name for `--format`, the file it writes in the
//! report's folder, and the function that renders it. A new format is one file with a
//! `RENDERER`, and its name in the `renderers!` list of `report/mod.rs`.

use super::run::ChaosReport;

/// One format of the run's report.
pub struct Renderer {
    /// The `--format` name.
    pub name: &'static str,
    /// The file it writes in the report's folder.
    pub file: &'static str,
    /// Renders the report.
    pub render: fn(&ChaosReport) -> String,
}
