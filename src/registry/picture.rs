//! The evaluation picture: confusion-matrix heat map and threshold sweep, as SVG.

/// The picture of `report` (replaced by the SVG renderer).
pub fn render(_report: &crate::evaluation::EvaluationReport) -> String {
    String::new()
}
