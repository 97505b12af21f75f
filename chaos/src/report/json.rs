//! The JSON report: the model as it is (the histories go to files of their own).

use super::run::ChaosReport;
use super::renderer::Renderer;

/// `report.json`.
pub const RENDERER: Renderer = Renderer {
    name: "json",
    file: "report.json",
    render: ChaosReport::to_json,
};
