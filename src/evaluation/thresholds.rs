//! The confidence-threshold sweep of an evaluation and the threshold it recommends.
//!
//! At threshold `t` an example is answered when its score is `>= t` and abstains otherwise;
//! [`ThresholdSweep`] says which thresholds to try, `sweep` measures each, and `recommend` picks
//! one (best F1, or the highest coverage that keeps a minimum precision). Pure; imports only
//! the parent module's shared helpers.

use serde::{Deserialize, Serialize};

use super::{EvaluationError, ratio};

/// Largest number of thresholds a [`ThresholdSweep`] may produce.
pub const MAX_SWEEP_POINTS: usize = 1000;

/// Thresholds are rounded to this resolution (1e-6) so that `start + i * step` does not drift.
const THRESHOLD_SCALE: f64 = 1e6;

/// Smallest accepted sweep step: anything smaller would produce duplicate rounded thresholds.
const MIN_STEP: f64 = 1e-6;

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

/// Metrics at each threshold: sort by score once, then each threshold is a binary search.
pub(super) fn sweep(
    mut scored: Vec<(f64, bool)>,
    thresholds: &[f64],
    total: u64,
) -> Vec<ThresholdMetrics> {
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
pub(super) fn recommend(
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
