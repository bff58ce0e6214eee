//! Offline analysis of a CXone evaluation (`GET …/jobs/{jobId}/evaluation`).
//!
//! [`analyze`] recomputes the classification metrics from the per-example results the server
//! returns, so the operator does not have to trust the server's summary numbers:
//!
//! * accuracy, per-label precision/recall/F1/support, macro and weighted averages, all defined
//!   exactly as scikit-learn defines them with `zero_division=0`;
//! * the confusion matrix (rows = actual, columns = predicted, in `labels` order);
//! * a confidence-threshold sweep: at threshold `t` an example is answered when its score is
//!   `>= t` and abstains otherwise, which trades coverage against precision;
//! * a recommended threshold (best F1, or the highest coverage that keeps a minimum precision);
//! * a comparison of the recomputed numbers with the ones the server reported.
//!
//! The module is pure: no I/O, no async, and it never panics on malformed input; every problem
//! with the input is reported as an [`EvaluationError`]. It imports only the CXone wire types
//! (`crate::cxone::model`) and `crate::text`.
//!
//! Here: the report and error types and [`analyze`], which checks the input and runs the steps;
//! `tally` counts the examples into the confusion matrix and derives per-label and averaged
//! metrics; `thresholds` holds the sweep and the recommendation; `server_comparison` holds the
//! comparison with the server's summary.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};

use crate::cxone::model::{EvaluationLabel, EvaluationResponse};

mod server_comparison;
mod tally;
mod thresholds;

pub use server_comparison::{SERVER_TOLERANCE, ServerComparison};
pub use thresholds::{
    MAX_SWEEP_POINTS, Objective, Recommendation, ThresholdMetrics, ThresholdSweep,
};

use server_comparison::compare_with_server;
use tally::Tally;
use thresholds::{recommend, sweep};

/// Largest number of labels [`analyze`] accepts (the confusion matrix is `labels²` cells).
pub const MAX_LABELS: usize = 2048;

/// Label ids quoted in error and mismatch messages are cut to this many characters.
const MAX_ID_CHARS: usize = 64;

/// Options of [`analyze`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationOptions {
    /// Thresholds to evaluate.
    pub sweep: ThresholdSweep,
    /// When set, recommend the threshold with the highest coverage whose precision is at least
    /// this value (in `[0, 1]`); when unset, recommend the threshold with the best F1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_precision: Option<f64>,
}

/// Precision, recall and F1 averaged over labels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AverageMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Metrics of one label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelMetrics {
    /// The label id.
    pub label: String,
    /// Correct predictions of this label / all predictions of this label (0 when never
    /// predicted).
    pub precision: f64,
    /// Correct predictions of this label / examples whose actual label is this one (0 when the
    /// support is 0).
    pub recall: f64,
    /// `2·tp / (support + predicted)` (0 when both are 0).
    pub f1: f64,
    /// Number of examples whose actual label is this one.
    pub support: u64,
}

/// Confusion matrix: `matrix[a][p]` counts examples with actual label `labels[a]` that were
/// predicted as `labels[p]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfusionMatrix {
    /// Label ids, in the order of the evaluation's `labels`.
    pub labels: Vec<String>,
    /// Rows = actual, columns = predicted.
    pub matrix: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// Count of examples with actual label `actual` predicted as `predicted`, or `None` when
    /// either id is not a label.
    pub fn get(&self, actual: &str, predicted: &str) -> Option<u64> {
        let a = self.labels.iter().position(|l| l == actual)?;
        let p = self.labels.iter().position(|l| l == predicted)?;
        self.matrix.get(a)?.get(p).copied()
    }
}

/// Everything [`analyze`] computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// Number of examples.
    pub total: u64,
    /// Fraction of examples whose prediction equals the actual label.
    pub accuracy: f64,
    /// Unweighted mean over the labels occurring in actuals or predictions.
    #[serde(rename = "macro")]
    pub macro_average: AverageMetrics,
    /// Mean over the labels weighted by support.
    #[serde(rename = "weighted")]
    pub weighted_average: AverageMetrics,
    /// One entry per label, in `labels` order (including labels with zero support).
    pub per_label: Vec<LabelMetrics>,
    pub confusion_matrix: ConfusionMatrix,
    /// One entry per threshold of the sweep, ascending.
    pub thresholds: Vec<ThresholdMetrics>,
    /// `None` when a minimum precision was requested and no threshold reaches it.
    pub recommendation: Option<Recommendation>,
    pub server_comparison: ServerComparison,
}

impl EvaluationReport {
    /// Metrics of the label with this id.
    pub fn label_metrics(&self, id: &str) -> Option<&LabelMetrics> {
        self.per_label.iter().find(|m| m.label == id)
    }
}

/// Why an evaluation could not be analysed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvaluationError {
    #[error("evaluation has no labels: `labels` is empty")]
    NoLabels,
    #[error("evaluation has {count} labels, more than the supported maximum of {max}")]
    TooManyLabels { count: usize, max: usize },
    #[error("duplicate label id {id:?} at labels[{index}] (already defined at labels[{first}])")]
    DuplicateLabel {
        index: usize,
        first: usize,
        id: String,
    },
    #[error(
        "length mismatch: {actuals} actuals but {predictions} predictions (one of each per example)"
    )]
    LengthMismatch { actuals: usize, predictions: usize },
    #[error(
        "length mismatch: {scores} scores for {examples} examples (scores must be empty or one per example)"
    )]
    ScoresLengthMismatch { scores: usize, examples: usize },
    #[error("evaluation is empty: actuals and predictions hold no examples")]
    Empty,
    #[error("unknown label id {id:?} at {field}[{index}]: not one of `labels`")]
    UnknownLabel {
        /// `"actuals"` or `"predictions"`.
        field: &'static str,
        index: usize,
        /// The offending id, cut to 64 characters.
        id: String,
    },
    #[error("invalid score {score} at scores[{index}]: must be a finite number in [0, 1]")]
    InvalidScore { index: usize, score: f64 },
    #[error("invalid threshold sweep (start {start}, end {end}, step {step}): {reason}")]
    InvalidSweep {
        start: f64,
        end: f64,
        step: f64,
        reason: String,
    },
    #[error("invalid minimum precision {value}: must be a finite number in [0, 1]")]
    InvalidMinPrecision { value: f64 },
}

/// Recomputes the metrics of an evaluation, sweeps confidence thresholds, recommends one and
/// compares the results with what the server reported. See the module documentation.
pub fn analyze(
    resp: &EvaluationResponse,
    opts: &EvaluationOptions,
) -> Result<EvaluationReport, EvaluationError> {
    let thresholds = check_options(opts)?;
    let index = index_labels(&resp.labels)?;
    check_lengths(resp)?;
    let (tally, scored) = Tally::count(resp, &index)?;

    let per_label = tally.per_label(&resp.labels);
    let (macro_average, weighted_average) = tally.averages(&per_label);
    let thresholds = sweep(scored, &thresholds, tally.total);
    let recommendation = recommend(&thresholds, opts.min_precision);
    let confusion_matrix = tally.confusion_matrix(&resp.labels);
    let server_comparison = compare_with_server(resp, &macro_average, &confusion_matrix);

    Ok(EvaluationReport {
        total: tally.total,
        accuracy: ratio(tally.correct(), tally.total),
        macro_average,
        weighted_average,
        per_label,
        confusion_matrix,
        thresholds,
        recommendation,
        server_comparison,
    })
}

/// The thresholds of the sweep, once the options are known to be usable.
fn check_options(opts: &EvaluationOptions) -> Result<Vec<f64>, EvaluationError> {
    let thresholds = opts.sweep.points()?;
    if let Some(value) = opts.min_precision
        && !(0.0..=1.0).contains(&value)
    {
        return Err(EvaluationError::InvalidMinPrecision { value });
    }
    Ok(thresholds)
}

/// Position of each label id in `labels`; there must be some, not too many, and no id twice.
fn index_labels(labels: &[EvaluationLabel]) -> Result<HashMap<&str, usize>, EvaluationError> {
    let n = labels.len();
    if n == 0 {
        return Err(EvaluationError::NoLabels);
    }
    if n > MAX_LABELS {
        return Err(EvaluationError::TooManyLabels {
            count: n,
            max: MAX_LABELS,
        });
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, label) in labels.iter().enumerate() {
        match index.entry(label.id.as_str()) {
            Entry::Occupied(first) => {
                return Err(EvaluationError::DuplicateLabel {
                    index: i,
                    first: *first.get(),
                    id: truncate_id(&label.id),
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    Ok(index)
}

/// One actual and one prediction per example, scores empty or one per example, and at least
/// one example.
fn check_lengths(resp: &EvaluationResponse) -> Result<(), EvaluationError> {
    let total = resp.actuals.len();
    if resp.predictions.len() != total {
        return Err(EvaluationError::LengthMismatch {
            actuals: total,
            predictions: resp.predictions.len(),
        });
    }
    if !resp.scores.is_empty() && resp.scores.len() != total {
        return Err(EvaluationError::ScoresLengthMismatch {
            scores: resp.scores.len(),
            examples: total,
        });
    }
    if total == 0 {
        return Err(EvaluationError::Empty);
    }
    Ok(())
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Cuts an id to [`MAX_ID_CHARS`] characters (marking the cut with `…`).
fn truncate_id(id: &str) -> String {
    crate::text::truncate_chars(id, MAX_ID_CHARS)
}

#[cfg(test)]
mod tests;
