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
//! with the input is reported as an [`EvaluationError`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};

use crate::cxone::model::EvaluationResponse;

/// Largest number of thresholds a [`ThresholdSweep`] may produce.
pub const MAX_SWEEP_POINTS: usize = 1000;

/// Largest number of labels [`analyze`] accepts (the confusion matrix is `labels²` cells).
pub const MAX_LABELS: usize = 2048;

/// Absolute tolerance used when comparing the server's macro precision/recall with ours.
pub const SERVER_TOLERANCE: f64 = 1e-6;

/// Thresholds are rounded to this resolution (1e-6) so that `start + i * step` does not drift.
const THRESHOLD_SCALE: f64 = 1e6;

/// Smallest accepted sweep step: anything smaller would produce duplicate rounded thresholds.
const MIN_STEP: f64 = 1e-6;

/// Label ids quoted in error and mismatch messages are cut to this many characters.
const MAX_ID_CHARS: usize = 64;

/// At most this many individual confusion-matrix differences are listed (then a summary line).
const MAX_MATRIX_MISMATCHES: usize = 20;

/// The confidence thresholds to evaluate: `start, start + step, …` up to and including `end`
/// (when `end` lies on the grid).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdSweep {
    /// First threshold, in `[0, 1]`.
    pub start: f64,
    /// Last threshold (inclusive), in `[start, 1]`.
    pub end: f64,
    /// Distance between consecutive thresholds, at least `1e-6`.
    pub step: f64,
}

impl Default for ThresholdSweep {
    /// `0.30, 0.35, …, 0.90` (13 thresholds).
    fn default() -> Self {
        Self {
            start: 0.30,
            end: 0.90,
            step: 0.05,
        }
    }
}

impl ThresholdSweep {
    /// The thresholds of this sweep, in ascending order.
    ///
    /// `t_i = start + i * step` for `i = 0..=n` where `n` is the number of whole steps between
    /// `start` and `end` (with a `1e-9`-step allowance for floating-point drift, so `end` is
    /// included when it lies on the grid and never exceeded otherwise). Each value is rounded to
    /// `1e-6`.
    pub fn points(&self) -> Result<Vec<f64>, EvaluationError> {
        let Self { start, end, step } = *self;
        let invalid = |reason: String| EvaluationError::InvalidSweep {
            start,
            end,
            step,
            reason,
        };
        if !(start.is_finite() && end.is_finite() && step.is_finite()) {
            return Err(invalid("start, end and step must be finite numbers".into()));
        }
        if !(0.0..=1.0).contains(&start) || !(0.0..=1.0).contains(&end) {
            return Err(invalid("start and end must lie in [0, 1]".into()));
        }
        if step <= 0.0 {
            return Err(invalid("step must be greater than 0".into()));
        }
        if step < MIN_STEP {
            return Err(invalid(format!(
                "step must be at least {MIN_STEP} (thresholds are rounded to 1e-6)"
            )));
        }
        if start > end {
            return Err(invalid("start must not be greater than end".into()));
        }
        // Finite and at most 1e6 here (span <= 1, step >= 1e-6), so the cast is exact.
        let steps = ((end - start) / step + 1e-9).floor();
        if steps + 1.0 > MAX_SWEEP_POINTS as f64 {
            return Err(invalid(format!(
                "the sweep has {} points, more than the maximum of {MAX_SWEEP_POINTS}",
                steps + 1.0
            )));
        }
        let steps = steps as usize;
        Ok((0..=steps)
            .map(|i| round_threshold(start + i as f64 * step))
            .collect())
    }
}

fn round_threshold(t: f64) -> f64 {
    (t * THRESHOLD_SCALE).round() / THRESHOLD_SCALE
}

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

/// Metrics at one confidence threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdMetrics {
    /// Examples with `score >= threshold` are answered, the others abstain.
    pub threshold: f64,
    /// Correct answered / answered (0 when nothing is answered).
    pub precision: f64,
    /// Correct answered / all examples.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Answered / all examples.
    pub coverage: f64,
}

/// What a [`Recommendation`] optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Objective {
    /// Highest F1 (ties: higher coverage, then lower threshold).
    #[serde(rename = "maxF1")]
    MaxF1,
    /// Highest coverage among thresholds reaching the minimum precision (ties: higher F1, then
    /// lower threshold).
    #[serde(rename = "minPrecision")]
    MinPrecision,
}

impl Objective {
    /// The wire name (`maxF1` / `minPrecision`).
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::MaxF1 => "maxF1",
            Objective::MinPrecision => "minPrecision",
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recommended confidence threshold and its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub threshold: f64,
    pub f1: f64,
    pub precision: f64,
    pub coverage: f64,
    pub objective: Objective,
}

/// Agreement between the server's summary metrics and the recomputed ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerComparison {
    /// `Some(true)` when everything the server reported agrees with the recomputed metrics,
    /// `Some(false)` when something differs (see `mismatches`), `None` (unknown) when the
    /// server reported none of `precision`, `recall` and `confusionMatrix`.
    pub consistent: Option<bool>,
    /// One human-readable line per difference.
    pub mismatches: Vec<String>,
    /// The summary fields the server did not report, in `precision`, `recall`,
    /// `confusionMatrix` order; those were not compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_reported: Vec<String>,
}

impl ServerComparison {
    /// True only when the server reported a summary and it agrees.
    pub fn agrees(&self) -> bool {
        self.consistent == Some(true)
    }

    /// One line saying how the comparison came out.
    pub fn describe(&self) -> String {
        let missing = self.not_reported.join(", ");
        match self.consistent {
            None => format!(
                "unknown: not reported by the server ({missing}); the metrics are recomputed from the per-example results only"
            ),
            Some(true) if missing.is_empty() => {
                "the server-reported metrics agree with the recomputed ones".to_string()
            }
            Some(true) => format!(
                "the server-reported metrics agree with the recomputed ones ({missing} not reported by the server)"
            ),
            Some(false) => format!(
                "the server-reported metrics disagree with the recomputed ones: {}",
                self.mismatches.join("; ")
            ),
        }
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
    let thresholds = opts.sweep.points()?;
    if let Some(value) = opts.min_precision
        && !(0.0..=1.0).contains(&value)
    {
        return Err(EvaluationError::InvalidMinPrecision { value });
    }

    let n = resp.labels.len();
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
    for (i, label) in resp.labels.iter().enumerate() {
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

    let lookup = |field: &'static str, i: usize, id: &str| {
        index
            .get(id)
            .copied()
            .ok_or_else(|| EvaluationError::UnknownLabel {
                field,
                index: i,
                id: truncate_id(id),
            })
    };
    // Flat n×n confusion matrix, rows = actual.
    let mut cells = vec![0u64; n * n];
    // (score, correct) per example, for the threshold sweep.
    let mut scored: Vec<(f64, bool)> = Vec::with_capacity(total);
    for (i, (actual, predicted)) in resp.actuals.iter().zip(&resp.predictions).enumerate() {
        let a = lookup("actuals", i, actual)?;
        let p = lookup("predictions", i, predicted)?;
        let score = match resp.scores.get(i) {
            Some(&s) if (0.0..=1.0).contains(&s) => s,
            Some(&score) => return Err(EvaluationError::InvalidScore { index: i, score }),
            None => 1.0,
        };
        cells[a * n + p] += 1;
        scored.push((score, a == p));
    }

    let total_u = total as u64;
    let total_f = total as f64;
    let mut support = vec![0u64; n];
    let mut predicted = vec![0u64; n];
    for a in 0..n {
        for p in 0..n {
            let c = cells[a * n + p];
            support[a] += c;
            predicted[p] += c;
        }
    }
    let correct: u64 = (0..n).map(|k| cells[k * n + k]).sum();

    let per_label: Vec<LabelMetrics> = resp
        .labels
        .iter()
        .enumerate()
        .map(|(k, label)| {
            let tp = cells[k * n + k];
            LabelMetrics {
                label: label.id.clone(),
                precision: ratio(tp, predicted[k]),
                recall: ratio(tp, support[k]),
                f1: ratio(2 * tp, support[k] + predicted[k]),
                support: support[k],
            }
        })
        .collect();

    // sklearn without `labels=`: average over the labels present in actuals ∪ predictions.
    let mut macro_sum = (0.0, 0.0, 0.0);
    let mut present = 0usize;
    let mut weighted_sum = (0.0, 0.0, 0.0);
    for (k, m) in per_label.iter().enumerate() {
        if support[k] > 0 || predicted[k] > 0 {
            present += 1;
            macro_sum.0 += m.precision;
            macro_sum.1 += m.recall;
            macro_sum.2 += m.f1;
        }
        let w = support[k] as f64;
        weighted_sum.0 += m.precision * w;
        weighted_sum.1 += m.recall * w;
        weighted_sum.2 += m.f1 * w;
    }
    // `present >= 1` because there is at least one example.
    let present_f = present.max(1) as f64;
    let macro_average = AverageMetrics {
        precision: macro_sum.0 / present_f,
        recall: macro_sum.1 / present_f,
        f1: macro_sum.2 / present_f,
    };
    let weighted_average = AverageMetrics {
        precision: weighted_sum.0 / total_f,
        recall: weighted_sum.1 / total_f,
        f1: weighted_sum.2 / total_f,
    };

    let thresholds = sweep(scored, &thresholds, total_u);
    let recommendation = recommend(&thresholds, opts.min_precision);

    let matrix: Vec<Vec<u64>> = cells.chunks(n).map(<[u64]>::to_vec).collect();
    let confusion_matrix = ConfusionMatrix {
        labels: resp.labels.iter().map(|l| l.id.clone()).collect(),
        matrix,
    };
    let server_comparison = compare_with_server(resp, &macro_average, &confusion_matrix);

    Ok(EvaluationReport {
        total: total_u,
        accuracy: ratio(correct, total_u),
        macro_average,
        weighted_average,
        per_label,
        confusion_matrix,
        thresholds,
        recommendation,
        server_comparison,
    })
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Metrics at each threshold: sort by score once, then each threshold is a binary search.
fn sweep(mut scored: Vec<(f64, bool)>, thresholds: &[f64], total: u64) -> Vec<ThresholdMetrics> {
    scored.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
    // correct_from[i] = number of correct examples among scored[i..].
    let mut correct_from = vec![0u64; scored.len() + 1];
    for i in (0..scored.len()).rev() {
        correct_from[i] = correct_from[i + 1] + u64::from(scored[i].1);
    }
    thresholds
        .iter()
        .map(|&threshold| {
            let first = scored.partition_point(|&(s, _)| s < threshold);
            let answered = (scored.len() - first) as u64;
            let correct = correct_from[first];
            ThresholdMetrics {
                threshold,
                precision: ratio(correct, answered),
                recall: ratio(correct, total),
                // Harmonic mean of correct/answered and correct/total.
                f1: ratio(2 * correct, answered + total),
                coverage: ratio(answered, total),
            }
        })
        .collect()
}

/// Picks the recommended threshold; `thresholds` is in ascending threshold order, so keeping the
/// first of equally good candidates prefers the lower threshold.
fn recommend(
    thresholds: &[ThresholdMetrics],
    min_precision: Option<f64>,
) -> Option<Recommendation> {
    let (objective, best) = match min_precision {
        None => (
            Objective::MaxF1,
            thresholds
                .iter()
                .fold(None::<&ThresholdMetrics>, |best, t| match best {
                    Some(b) if (t.f1, t.coverage) <= (b.f1, b.coverage) => Some(b),
                    _ => Some(t),
                }),
        ),
        Some(p) => (
            Objective::MinPrecision,
            thresholds.iter().filter(|t| t.precision >= p).fold(
                None::<&ThresholdMetrics>,
                |best, t| match best {
                    Some(b) if (t.coverage, t.f1) <= (b.coverage, b.f1) => Some(b),
                    _ => Some(t),
                },
            ),
        ),
    };
    best.map(|t| Recommendation {
        threshold: t.threshold,
        f1: t.f1,
        precision: t.precision,
        coverage: t.coverage,
        objective,
    })
}

fn compare_with_server(
    resp: &EvaluationResponse,
    ours: &AverageMetrics,
    cm: &ConfusionMatrix,
) -> ServerComparison {
    let mut mismatches = Vec::new();
    let mut not_reported = Vec::new();
    for (what, field, server, recomputed) in [
        ("precision", "precision", resp.precision, ours.precision),
        ("recall", "recall", resp.recall, ours.recall),
    ] {
        let Some(server) = server else {
            not_reported.push(field.to_string());
            continue;
        };
        // Written so that a NaN server value is a mismatch.
        let agrees = (server - recomputed).abs() <= SERVER_TOLERANCE;
        if !agrees {
            let (s, r) = format_pair(server, recomputed);
            mismatches.push(format!(
                "server-reported macro {what} {s} differs from recomputed {r}"
            ));
        }
    }

    let server: &[Vec<u64>] = resp.confusion_matrix.as_deref().unwrap_or_default();
    let n = cm.labels.len();
    if server.is_empty() {
        not_reported.push("confusionMatrix".to_string());
    } else {
        if server.len() != n {
            mismatches.push(format!(
                "server-reported confusion matrix has {} rows, expected {n} (one per label)",
                server.len()
            ));
        } else {
            let mut listed = 0usize;
            let mut unlisted = 0usize;
            let mut note = |line: String| {
                if listed < MAX_MATRIX_MISMATCHES {
                    mismatches.push(line);
                    listed += 1;
                } else {
                    unlisted += 1;
                }
            };
            let bad_rows: Vec<usize> = (0..n).filter(|&a| server[a].len() != n).collect();
            if bad_rows.is_empty() {
                for (a, (row_s, row_r)) in server.iter().zip(&cm.matrix).enumerate() {
                    for (p, (&s, &r)) in row_s.iter().zip(row_r).enumerate() {
                        if s != r {
                            note(format!(
                                "server-reported confusion matrix cell [actual {:?}, predicted {:?}] \
                                 (row {a}, column {p}) is {s}, recomputed {r}",
                                truncate_id(&cm.labels[a]),
                                truncate_id(&cm.labels[p]),
                            ));
                        }
                    }
                }
            } else {
                for a in bad_rows {
                    note(format!(
                        "server-reported confusion matrix row {a} (actual {:?}) has {} columns, \
                         expected {n} (one per label)",
                        truncate_id(&cm.labels[a]),
                        server[a].len()
                    ));
                }
            }
            if unlisted > 0 {
                mismatches.push(format!(
                    "… and {unlisted} more confusion matrix differences"
                ));
            }
        }
    }

    // Nothing reported, nothing compared: unknown, not "consistent".
    let consistent = (not_reported.len() < 3).then_some(mismatches.is_empty());
    ServerComparison {
        consistent,
        mismatches,
        not_reported,
    }
}

/// Formats two numbers with 4 decimals, or with full precision when 4 decimals would make
/// them look equal.
fn format_pair(a: f64, b: f64) -> (String, String) {
    let (x, y) = (format!("{a:.4}"), format!("{b:.4}"));
    if x == y {
        (a.to_string(), b.to_string())
    } else {
        (x, y)
    }
}

/// Cuts an id to [`MAX_ID_CHARS`] characters (marking the cut with `…`).
fn truncate_id(id: &str) -> String {
    crate::text::truncate_chars(id, MAX_ID_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxone::model::EvaluationLabel;
    use proptest::prelude::*;

    const EPS: f64 = 1e-12;

    fn labels(ids: &[&str]) -> Vec<EvaluationLabel> {
        ids.iter()
            .map(|id| EvaluationLabel {
                id: (*id).to_owned(),
                name: format!("Label {id}"),
            })
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// An evaluation whose server summary is filled in from our own analysis (so it is
    /// consistent unless a test changes it).
    fn eval(
        ids: &[&str],
        actuals: &[&str],
        predictions: &[&str],
        scores: &[f64],
    ) -> EvaluationResponse {
        let mut resp = EvaluationResponse {
            labels: labels(ids),
            actuals: strings(actuals),
            predictions: strings(predictions),
            scores: scores.to_vec(),
            precision: None,
            recall: None,
            confusion_matrix: None,
            training_duration_seconds: 12.5,
        };
        if let Ok(r) = analyze(&resp, &EvaluationOptions::default()) {
            resp.precision = Some(r.macro_average.precision);
            resp.recall = Some(r.macro_average.recall);
            resp.confusion_matrix = Some(r.confusion_matrix.matrix);
        }
        resp
    }

    fn run(resp: &EvaluationResponse) -> EvaluationReport {
        analyze(resp, &EvaluationOptions::default()).expect("analysis succeeds")
    }

    fn with_min_precision(p: f64) -> EvaluationOptions {
        EvaluationOptions {
            min_precision: Some(p),
            ..EvaluationOptions::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    #[test]
    fn default_sweep_has_13_points() {
        let points = ThresholdSweep::default().points().unwrap();
        assert_eq!(points.len(), 13);
        assert_eq!(points[0], 0.30);
        assert_eq!(points[4], 0.5);
        assert_eq!(points[12], 0.90);
        for (i, t) in points.iter().enumerate() {
            assert_eq!(
                *t,
                format!("{:.2}", 0.30 + i as f64 * 0.05)
                    .parse::<f64>()
                    .unwrap()
            );
        }
    }

    #[test]
    fn sweep_never_passes_end() {
        let s = ThresholdSweep {
            start: 0.0,
            end: 1.0,
            step: 0.4,
        };
        assert_eq!(s.points().unwrap(), vec![0.0, 0.4, 0.8]);
        let single = ThresholdSweep {
            start: 0.5,
            end: 0.5,
            step: 0.1,
        };
        assert_eq!(single.points().unwrap(), vec![0.5]);
        let full = ThresholdSweep {
            start: 0.0,
            end: 1.0,
            step: 0.01,
        };
        let points = full.points().unwrap();
        assert_eq!(points.len(), 101);
        assert_eq!(*points.last().unwrap(), 1.0);
    }

    #[test]
    fn perfect_classifier() {
        let resp = eval(
            &["a", "b", "c"],
            &["a", "b", "c", "a", "b"],
            &["a", "b", "c", "a", "b"],
            &[0.9, 0.8, 0.7, 0.95, 0.99],
        );
        let r = run(&resp);
        assert_eq!(r.total, 5);
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(
            r.macro_average,
            AverageMetrics {
                precision: 1.0,
                recall: 1.0,
                f1: 1.0
            }
        );
        assert_eq!(r.weighted_average, r.macro_average);
        assert_eq!(
            r.per_label.iter().map(|m| m.support).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(
            r.confusion_matrix.matrix,
            vec![vec![2, 0, 0], vec![0, 2, 0], vec![0, 0, 1]]
        );
        assert_eq!(r.confusion_matrix.get("a", "a"), Some(2));
        assert_eq!(r.confusion_matrix.get("a", "zz"), None);
        // Every threshold up to 0.70 answers everything.
        let at_07 = r.thresholds.iter().find(|t| t.threshold == 0.7).unwrap();
        assert_eq!(
            (at_07.precision, at_07.recall, at_07.coverage),
            (1.0, 1.0, 1.0)
        );
        let rec = r.recommendation.unwrap();
        assert_eq!(rec.threshold, 0.30);
        assert_eq!(rec.objective, Objective::MaxF1);
        assert_eq!(r.server_comparison.consistent, Some(true));
        assert!(r.server_comparison.mismatches.is_empty());
        assert!(r.server_comparison.not_reported.is_empty());
    }

    #[test]
    fn all_wrong() {
        let resp = eval(&["a", "b"], &["a", "b", "a"], &["b", "a", "b"], &[]);
        let r = run(&resp);
        assert_eq!(r.accuracy, 0.0);
        for m in &r.per_label {
            assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
        }
        assert_eq!(r.macro_average.f1, 0.0);
        assert_eq!(r.confusion_matrix.matrix, vec![vec![0, 2], vec![1, 0]]);
        // No scores: everything is answered at every threshold.
        assert_eq!(r.thresholds.len(), 13);
        for t in &r.thresholds {
            assert_eq!(
                (t.precision, t.recall, t.f1, t.coverage),
                (0.0, 0.0, 0.0, 1.0)
            );
        }
        // All F1s tie at 0 with equal coverage: the lowest threshold wins.
        assert_eq!(r.recommendation.unwrap().threshold, 0.30);
    }

    #[test]
    fn label_never_predicted_has_zero_precision() {
        // c occurs twice but is never predicted.
        let resp = eval(
            &["a", "b", "c"],
            &["a", "a", "b", "c", "c"],
            &["a", "a", "b", "a", "b"],
            &[],
        );
        let r = run(&resp);
        let c = r.label_metrics("c").unwrap();
        assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 2));
        let a = r.label_metrics("a").unwrap();
        assert!(close(a.precision, 2.0 / 3.0));
        assert_eq!(a.recall, 1.0);
        assert!(close(a.f1, 0.8));
        let b = r.label_metrics("b").unwrap();
        assert!(close(b.precision, 0.5));
        assert_eq!(b.recall, 1.0);
        assert!(close(b.f1, 2.0 / 3.0));
        // All three labels occur, so the macro average is over three.
        assert!(close(r.macro_average.precision, (2.0 / 3.0 + 0.5) / 3.0));
        assert!(close(r.macro_average.recall, 2.0 / 3.0));
        assert!(close(r.macro_average.f1, (0.8 + 2.0 / 3.0) / 3.0));
        // Weighted by support 2, 1, 2 out of 5.
        assert!(close(
            r.weighted_average.precision,
            (2.0 / 3.0 * 2.0 + 0.5) / 5.0
        ));
        assert!(close(r.weighted_average.recall, 3.0 / 5.0));
        assert!(close(r.accuracy, 0.6));
    }

    #[test]
    fn label_with_zero_support_is_reported_but_not_averaged() {
        // d is a label but never occurs; c is predicted once but never actual.
        let resp = eval(
            &["a", "b", "c", "d"],
            &["a", "a", "b", "b"],
            &["a", "c", "b", "b"],
            &[],
        );
        let r = run(&resp);
        assert_eq!(r.per_label.len(), 4);
        let d = r.label_metrics("d").unwrap();
        assert_eq!((d.precision, d.recall, d.f1, d.support), (0.0, 0.0, 0.0, 0));
        let c = r.label_metrics("c").unwrap();
        assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 0));
        // Macro over a, b, c (present in actuals ∪ predictions), not d.
        // a: p=1, r=0.5, f1=2/3; b: p=1, r=1, f1=1; c: 0.
        assert!(close(r.macro_average.precision, 2.0 / 3.0));
        assert!(close(r.macro_average.recall, 0.5));
        assert!(close(r.macro_average.f1, (2.0 / 3.0 + 1.0) / 3.0));
        // Weighted: a and b have support 2 each.
        assert!(close(r.weighted_average.precision, 1.0));
        assert!(close(r.weighted_average.recall, 0.75));
        assert!(close(r.weighted_average.f1, (2.0 / 3.0 + 1.0) / 2.0));
        assert_eq!(r.confusion_matrix.matrix[3], vec![0, 0, 0, 0]);
        assert!(r.server_comparison.agrees());
    }

    #[test]
    fn threshold_tuning_finds_best_f1() {
        // Correct examples are confident, wrong ones are not: dropping the wrong ones at 0.6
        // raises precision without losing recall.
        let resp = eval(
            &["a", "b"],
            &["a", "a", "b", "b", "a", "b"],
            &["a", "a", "b", "b", "b", "a"],
            &[0.9, 0.8, 0.7, 0.65, 0.55, 0.4],
        );
        let r = run(&resp);
        let at = |t: f64| *r.thresholds.iter().find(|m| m.threshold == t).unwrap();
        // 0.30: all 6 answered, 4 correct.
        let t = at(0.30);
        assert!(close(t.precision, 4.0 / 6.0));
        assert!(close(t.recall, 4.0 / 6.0));
        assert!(close(t.f1, 4.0 / 6.0));
        assert_eq!(t.coverage, 1.0);
        // 0.45: 0.4 abstains -> 5 answered, 4 correct.
        let t = at(0.45);
        assert!(close(t.precision, 0.8));
        assert!(close(t.coverage, 5.0 / 6.0));
        // 0.60: 4 answered, 4 correct: precision 1, recall 4/6, f1 0.8.
        let t = at(0.60);
        assert_eq!(t.precision, 1.0);
        assert!(close(t.recall, 4.0 / 6.0));
        assert!(close(t.f1, 0.8));
        // 0.65 (score exactly on the threshold is answered) has the same counts as 0.60.
        assert_eq!(at(0.65).coverage, at(0.60).coverage);
        // 0.70: 3 answered, all correct: f1 = 2*3/(3+6).
        assert!(close(at(0.70).f1, 6.0 / 9.0));
        // 0.90: 1 answered.
        assert!(close(at(0.90).coverage, 1.0 / 6.0));

        let rec = r.recommendation.unwrap();
        // F1 0.8 at 0.60 and 0.65 (same coverage): the lower threshold wins.
        assert_eq!(rec.threshold, 0.60);
        assert!(close(rec.f1, 0.8));
        assert_eq!(rec.precision, 1.0);
        assert_eq!(rec.objective, Objective::MaxF1);
    }

    #[test]
    fn min_precision_picks_highest_coverage() {
        let resp = eval(
            &["a", "b"],
            &["a", "a", "b", "b", "a", "b"],
            &["a", "a", "b", "b", "b", "a"],
            &[0.9, 0.8, 0.7, 0.65, 0.55, 0.4],
        );
        // Precision >= 0.75 first reached at 0.45 (0.8 with coverage 5/6).
        let r = analyze(&resp, &with_min_precision(0.75)).unwrap();
        let rec = r.recommendation.unwrap();
        assert_eq!(rec.threshold, 0.45);
        assert!(close(rec.precision, 0.8));
        assert!(close(rec.coverage, 5.0 / 6.0));
        assert_eq!(rec.objective, Objective::MinPrecision);
        // Precision 1 needs threshold >= 0.6; 0.60 and 0.65 tie on coverage and F1.
        let r = analyze(&resp, &with_min_precision(1.0)).unwrap();
        let rec = r.recommendation.unwrap();
        assert_eq!(rec.threshold, 0.60);
        assert_eq!(rec.precision, 1.0);
        // A minimum precision of 0 qualifies every threshold: the lowest has full coverage.
        let r = analyze(&resp, &with_min_precision(0.0)).unwrap();
        assert_eq!(r.recommendation.unwrap().threshold, 0.30);
    }

    #[test]
    fn min_precision_unattainable_gives_none() {
        let resp = eval(&["a", "b"], &["a", "b"], &["b", "b"], &[0.95, 0.95]);
        let r = analyze(&resp, &with_min_precision(0.9)).unwrap();
        assert_eq!(r.recommendation, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["recommendation"].is_null());
    }

    #[test]
    fn nothing_answered_has_zero_precision() {
        let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.1, 0.2]);
        let r = run(&resp);
        for t in &r.thresholds {
            assert_eq!(
                (t.precision, t.recall, t.f1, t.coverage),
                (0.0, 0.0, 0.0, 0.0)
            );
        }
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.recommendation.unwrap().threshold, 0.30);
    }

    #[test]
    fn report_serializes_to_the_documented_shape() {
        let resp = eval(&["a", "b"], &["a", "b"], &["a", "a"], &[0.5, 0.6]);
        let r = run(&resp);
        let json = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "accuracy",
                "confusionMatrix",
                "macro",
                "perLabel",
                "recommendation",
                "serverComparison",
                "thresholds",
                "total",
                "weighted"
            ]
        );
        assert_eq!(json["total"], 2);
        assert!(json["macro"]["f1"].is_number());
        assert_eq!(json["weighted"].as_object().unwrap().len(), 3);
        assert_eq!(json["perLabel"][1]["label"], "b");
        assert_eq!(json["perLabel"][0]["support"], 1);
        assert_eq!(
            json["confusionMatrix"]["labels"],
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            json["confusionMatrix"]["matrix"],
            serde_json::json!([[1, 0], [1, 0]])
        );
        let t = json["thresholds"][0].as_object().unwrap();
        for key in ["threshold", "precision", "recall", "f1", "coverage"] {
            assert!(t[key].is_number(), "{key}");
        }
        let rec = json["recommendation"].as_object().unwrap();
        assert_eq!(rec["objective"], "maxF1");
        for key in ["threshold", "f1", "precision", "coverage"] {
            assert!(rec[key].is_number(), "{key}");
        }
        assert_eq!(json["serverComparison"]["consistent"], true);
        assert_eq!(
            json["serverComparison"]["mismatches"],
            serde_json::json!([])
        );
        let back: EvaluationReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            serde_json::to_value(Objective::MinPrecision).unwrap(),
            "minPrecision"
        );
    }

    #[test]
    fn server_mismatches_are_reported() {
        let mut resp = eval(&["a", "b"], &["a", "b", "a"], &["a", "b", "b"], &[]);
        let r = run(&resp);
        let ours_p = r.macro_average.precision;
        resp.precision = Some(0.8123);
        resp.recall = resp.recall.map(|r| r + 5e-7); // within tolerance
        if let Some(m) = resp.confusion_matrix.as_mut() {
            m[0][1] = 7;
        }
        let r = run(&resp);
        assert_eq!(r.server_comparison.consistent, Some(false));
        assert_eq!(
            r.server_comparison.mismatches,
            vec![
                format!(
                    "server-reported macro precision 0.8123 differs from recomputed {ours_p:.4}"
                ),
                "server-reported confusion matrix cell [actual \"a\", predicted \"b\"] (row 0, \
                 column 1) is 7, recomputed 1"
                    .to_owned(),
            ]
        );

        // Differences finer than 4 decimals are shown at full precision.
        resp.confusion_matrix = None;
        resp.precision = Some(ours_p + 1e-5);
        let r = run(&resp);
        assert_eq!(r.server_comparison.mismatches.len(), 1);
        assert!(
            r.server_comparison.mismatches[0].ends_with(&format!("recomputed {ours_p}")),
            "{:?}",
            r.server_comparison.mismatches
        );
        assert!(!r.server_comparison.mismatches[0].contains("0.7500 "));

        // NaN never compares equal.
        resp.precision = Some(ours_p);
        resp.recall = Some(f64::NAN);
        let r = run(&resp);
        assert_eq!(r.server_comparison.mismatches.len(), 1);
        assert!(r.server_comparison.mismatches[0].contains("macro recall NaN"));
    }

    #[test]
    fn server_matrix_shape_mismatches() {
        let mut resp = eval(&["a", "b"], &["a", "b"], &["a", "b"], &[]);
        resp.confusion_matrix = Some(vec![vec![1, 0]]);
        let r = run(&resp);
        assert_eq!(
            r.server_comparison.mismatches,
            vec!["server-reported confusion matrix has 1 rows, expected 2 (one per label)"]
        );
        resp.confusion_matrix = Some(vec![vec![1, 0], vec![1]]);
        let r = run(&resp);
        assert_eq!(
            r.server_comparison.mismatches,
            vec![
                "server-reported confusion matrix row 1 (actual \"b\") has 1 columns, expected 2 \
                 (one per label)"
            ]
        );
        // Empty means "not reported": the rest is still compared.
        resp.confusion_matrix = Some(vec![]);
        let c = run(&resp).server_comparison;
        assert_eq!(c.consistent, Some(true));
        assert_eq!(c.not_reported, vec!["confusionMatrix"]);
    }

    #[test]
    fn an_unreported_server_summary_is_unknown() {
        let mut resp = eval(
            &["a", "b"],
            &["a", "b", "a"],
            &["a", "b", "b"],
            &[0.9, 0.8, 0.4],
        );
        let with_summary = run(&resp);
        resp.precision = None;
        resp.recall = None;
        resp.confusion_matrix = None;
        let r = run(&resp);
        // Everything is still recomputed from the per-example arrays...
        assert_eq!(r.macro_average, with_summary.macro_average);
        assert_eq!(r.confusion_matrix, with_summary.confusion_matrix);
        assert_eq!(r.thresholds, with_summary.thresholds);
        // ...but agreement is unknown, neither claimed nor denied.
        let c = &r.server_comparison;
        assert_eq!(c.consistent, None);
        assert!(!c.agrees());
        assert!(c.mismatches.is_empty());
        assert_eq!(
            c.not_reported,
            vec!["precision", "recall", "confusionMatrix"]
        );
        assert!(
            c.describe().starts_with(
                "unknown: not reported by the server (precision, recall, confusionMatrix)"
            ),
            "{}",
            c.describe()
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["serverComparison"]["consistent"].is_null());
        assert_eq!(
            json["serverComparison"]["notReported"],
            serde_json::json!(["precision", "recall", "confusionMatrix"])
        );
        let back: EvaluationReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);

        // Part of the summary: the reported part is compared, the rest named.
        resp.recall = Some(r.macro_average.recall);
        let c = run(&resp).server_comparison;
        assert_eq!(c.consistent, Some(true));
        assert_eq!(c.not_reported, vec!["precision", "confusionMatrix"]);
        assert!(
            c.describe()
                .contains("(precision, confusionMatrix not reported by the server)")
        );
        resp.recall = Some(0.1);
        let c = run(&resp).server_comparison;
        assert_eq!(c.consistent, Some(false));
        assert!(
            c.describe().contains("macro recall 0.1000 differs"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn many_matrix_differences_are_summarised() {
        let ids: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut resp = eval(&id_refs, &id_refs, &id_refs, &[]);
        resp.confusion_matrix = Some(vec![vec![5; 10]; 10]);
        let r = run(&resp);
        let m = &r.server_comparison.mismatches;
        assert_eq!(m.len(), MAX_MATRIX_MISMATCHES + 1);
        assert_eq!(
            m.last().unwrap(),
            &format!(
                "… and {} more confusion matrix differences",
                100 - MAX_MATRIX_MISMATCHES
            )
        );
    }

    fn err(resp: &EvaluationResponse) -> EvaluationError {
        analyze(resp, &EvaluationOptions::default()).unwrap_err()
    }

    #[test]
    fn error_no_labels() {
        let resp = eval(&[], &["a"], &["a"], &[]);
        assert_eq!(err(&resp), EvaluationError::NoLabels);
    }

    #[test]
    fn error_too_many_labels() {
        let ids: Vec<String> = (0..=MAX_LABELS).map(|i| i.to_string()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let resp = eval(&id_refs, &["0"], &["0"], &[]);
        assert_eq!(
            err(&resp),
            EvaluationError::TooManyLabels {
                count: MAX_LABELS + 1,
                max: MAX_LABELS
            }
        );
    }

    #[test]
    fn error_duplicate_label() {
        let resp = eval(&["a", "b", "a"], &["a"], &["a"], &[]);
        let e = err(&resp);
        assert_eq!(
            e,
            EvaluationError::DuplicateLabel {
                index: 2,
                first: 0,
                id: "a".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "duplicate label id \"a\" at labels[2] (already defined at labels[0])"
        );
    }

    #[test]
    fn error_length_mismatch() {
        let resp = eval(&["a"], &["a", "a"], &["a"], &[]);
        let e = err(&resp);
        assert_eq!(
            e,
            EvaluationError::LengthMismatch {
                actuals: 2,
                predictions: 1
            }
        );
        assert!(e.to_string().contains("2 actuals but 1 predictions"));
    }

    #[test]
    fn error_scores_length_mismatch() {
        let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.5]);
        assert_eq!(
            err(&resp),
            EvaluationError::ScoresLengthMismatch {
                scores: 1,
                examples: 2
            }
        );
    }

    #[test]
    fn error_empty() {
        let resp = eval(&["a"], &[], &[], &[]);
        assert_eq!(err(&resp), EvaluationError::Empty);
    }

    #[test]
    fn error_unknown_label() {
        let resp = eval(&["a", "b"], &["a", "x"], &["a", "b"], &[]);
        let e = err(&resp);
        assert_eq!(
            e,
            EvaluationError::UnknownLabel {
                field: "actuals",
                index: 1,
                id: "x".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown label id \"x\" at actuals[1]: not one of `labels`"
        );

        let long = "é".repeat(100);
        let resp = eval(&["a", "b"], &["a", "b"], &["a", &long], &[]);
        let EvaluationError::UnknownLabel { field, index, id } = err(&resp) else {
            panic!("expected UnknownLabel");
        };
        assert_eq!((field, index), ("predictions", 1));
        assert_eq!(id, format!("{}…", "é".repeat(64)));
    }

    #[test]
    fn error_invalid_score() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.01, 1.01] {
            let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.5, bad]);
            match err(&resp) {
                EvaluationError::InvalidScore { index: 1, score } => {
                    assert!(score.is_nan() || score == bad)
                }
                other => panic!("expected InvalidScore for {bad}, got {other:?}"),
            }
        }
        // The bounds themselves are valid.
        let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.0, 1.0]);
        assert!(analyze(&resp, &EvaluationOptions::default()).is_ok());
    }

    #[test]
    fn error_invalid_sweep() {
        let resp = eval(&["a"], &["a"], &["a"], &[]);
        let cases = [
            (0.3, 0.9, 0.0, "step must be greater than 0"),
            (0.3, 0.9, -0.1, "step must be greater than 0"),
            (0.3, 0.9, 1e-7, "step must be at least"),
            (0.9, 0.3, 0.05, "start must not be greater than end"),
            (-0.1, 0.9, 0.05, "must lie in [0, 1]"),
            (0.1, 1.5, 0.05, "must lie in [0, 1]"),
            (f64::NAN, 0.9, 0.05, "finite"),
            (0.3, 0.9, f64::INFINITY, "finite"),
            (0.0, 1.0, 0.0005, "more than the maximum of 1000"),
        ];
        for (start, end, step, reason) in cases {
            let opts = EvaluationOptions {
                sweep: ThresholdSweep { start, end, step },
                min_precision: None,
            };
            match analyze(&resp, &opts) {
                Err(e @ EvaluationError::InvalidSweep { .. }) => {
                    assert!(
                        e.to_string().contains(reason),
                        "{e} should mention {reason:?}"
                    )
                }
                other => panic!("({start}, {end}, {step}): expected InvalidSweep, got {other:?}"),
            }
        }
        // Exactly 1000 points is fine.
        let opts = EvaluationOptions {
            sweep: ThresholdSweep {
                start: 0.0,
                end: 0.999,
                step: 0.001,
            },
            min_precision: None,
        };
        assert_eq!(analyze(&resp, &opts).unwrap().thresholds.len(), 1000);
    }

    #[test]
    fn error_invalid_min_precision() {
        let resp = eval(&["a"], &["a"], &["a"], &[]);
        for bad in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
            match analyze(&resp, &with_min_precision(bad)) {
                Err(EvaluationError::InvalidMinPrecision { .. }) => {}
                other => panic!("expected InvalidMinPrecision for {bad}, got {other:?}"),
            }
        }
    }

    #[test]
    fn large_input() {
        let n_labels = 100;
        let total = 100_000;
        let ids: Vec<String> = (0..n_labels).map(|i| format!("intent-{i:03}")).collect();
        let mut actuals = Vec::with_capacity(total);
        let mut predictions = Vec::with_capacity(total);
        let mut scores = Vec::with_capacity(total);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..total {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = (x % n_labels as u64) as usize;
            let p = if x.is_multiple_of(5) {
                (a + 1) % n_labels
            } else {
                a
            };
            actuals.push(ids[a].clone());
            predictions.push(ids[p].clone());
            scores.push((x >> 11) as f64 / (1u64 << 53) as f64);
        }
        let resp = EvaluationResponse {
            labels: ids
                .iter()
                .map(|id| EvaluationLabel {
                    id: id.clone(),
                    name: String::new(),
                })
                .collect(),
            actuals,
            predictions,
            scores,
            precision: None,
            recall: None,
            confusion_matrix: None,
            training_duration_seconds: 0.0,
        };
        let r = run(&resp);
        let sum: u64 = r.confusion_matrix.matrix.iter().flatten().sum();
        assert_eq!(sum, total as u64);
        assert!(r.accuracy > 0.7 && r.accuracy < 0.9, "{}", r.accuracy);
        assert_eq!(r.thresholds.len(), 13);
    }

    fn check_invariants(resp: &EvaluationResponse, r: &EvaluationReport) {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        assert_eq!(r.total, resp.actuals.len() as u64);
        assert!(unit(r.accuracy));
        for avg in [r.macro_average, r.weighted_average] {
            assert!(
                unit(avg.precision) && unit(avg.recall) && unit(avg.f1),
                "{avg:?}"
            );
        }
        assert_eq!(r.per_label.len(), resp.labels.len());
        for m in &r.per_label {
            assert!(unit(m.precision) && unit(m.recall) && unit(m.f1), "{m:?}");
        }
        let support: u64 = r.per_label.iter().map(|m| m.support).sum();
        assert_eq!(support, r.total);
        let sum: u64 = r.confusion_matrix.matrix.iter().flatten().sum();
        assert_eq!(sum, r.total);
        assert_eq!(r.confusion_matrix.matrix.len(), resp.labels.len());
        for t in &r.thresholds {
            assert!(unit(t.precision) && unit(t.recall) && unit(t.f1) && unit(t.coverage));
            assert!(t.recall <= t.coverage);
        }
        assert!(
            r.thresholds
                .windows(2)
                .all(|w| w[0].threshold < w[1].threshold)
        );
        let c = &r.server_comparison;
        match c.consistent {
            Some(consistent) => assert_eq!(consistent, c.mismatches.is_empty()),
            None => assert!(c.mismatches.is_empty() && c.not_reported.len() == 3),
        }
    }

    /// Label ids drawn from a small pool so that duplicates and unknown ids both happen.
    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-e]",
            1 => ".{0,80}",
        ]
    }

    fn any_score() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0..=1.0f64,
            1 => any::<f64>(),
            1 => Just(0.5),
        ]
    }

    fn any_sweep_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0..=1.0f64,
            1 => any::<f64>(),
            1 => 0.0..1e-5f64,
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            ids in prop::collection::vec(any_id(), 0..6),
            examples in prop::collection::vec((any_id(), any_id(), any_score()), 0..40),
            drop_scores in any::<bool>(),
            extra_score in prop::option::of(any_score()),
            precision in prop::option::of(any::<f64>()),
            recall in prop::option::of(any::<f64>()),
            matrix in prop::option::of(prop::collection::vec(prop::collection::vec(0u64..5, 0..6), 0..6)),
            sweep in (any_sweep_value(), any_sweep_value(), any_sweep_value()),
            min_precision in prop::option::of(any_sweep_value()),
        ) {
            let mut scores: Vec<f64> = if drop_scores {
                vec![]
            } else {
                examples.iter().map(|e| e.2).collect()
            };
            scores.extend(extra_score);
            let resp = EvaluationResponse {
                labels: ids.iter().map(|id| EvaluationLabel { id: id.clone(), name: String::new() }).collect(),
                actuals: examples.iter().map(|e| e.0.clone()).collect(),
                predictions: examples.iter().map(|e| e.1.clone()).collect(),
                scores,
                precision,
                recall,
                confusion_matrix: matrix,
                training_duration_seconds: 0.0,
            };
            let opts = EvaluationOptions {
                sweep: ThresholdSweep { start: sweep.0, end: sweep.1, step: sweep.2 },
                min_precision,
            };
            if let Ok(r) = analyze(&resp, &opts) {
                check_invariants(&resp, &r);
            }
        }

        #[test]
        fn valid_input_is_analysed(
            n_labels in 1usize..8,
            examples in prop::collection::vec((0usize..8, 0usize..8, 0.0..=1.0f64), 1..200),
            with_scores in any::<bool>(),
            min_precision in prop::option::of(0.0..=1.0f64),
        ) {
            let ids: Vec<String> = (0..n_labels).map(|i| format!("label-{i}")).collect();
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let actuals: Vec<&str> = examples.iter().map(|e| id_refs[e.0 % n_labels]).collect();
            let predictions: Vec<&str> = examples.iter().map(|e| id_refs[e.1 % n_labels]).collect();
            let scores: Vec<f64> = if with_scores { examples.iter().map(|e| e.2).collect() } else { vec![] };
            let resp = eval(&id_refs, &actuals, &predictions, &scores);
            let opts = EvaluationOptions { min_precision, ..EvaluationOptions::default() };
            let r = analyze(&resp, &opts);
            prop_assert!(r.is_ok(), "{r:?}");
            let r = r.unwrap();
            check_invariants(&resp, &r);
            prop_assert_eq!(r.server_comparison.consistent, Some(true));
            prop_assert_eq!(r.thresholds.len(), 13);
            match (min_precision, r.recommendation) {
                (None, rec) => {
                    let rec = rec.expect("maxF1 always recommends");
                    prop_assert_eq!(rec.objective, Objective::MaxF1);
                    prop_assert!(r.thresholds.iter().all(|t| t.f1 <= rec.f1));
                }
                (Some(p), Some(rec)) => {
                    prop_assert_eq!(rec.objective, Objective::MinPrecision);
                    prop_assert!(rec.precision >= p);
                    prop_assert!(r.thresholds.iter().filter(|t| t.precision >= p).all(|t| t.coverage <= rec.coverage));
                }
                (Some(p), None) => {
                    prop_assert!(r.thresholds.iter().all(|t| t.precision < p));
                }
            }
            if !with_scores {
                prop_assert!(r.thresholds.iter().all(|t| t.coverage == 1.0));
            }
        }
    }
}
