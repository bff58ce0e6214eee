//! The examples of an evaluation counted into a confusion matrix, and the per-label, macro and
//! weighted metrics derived from it (scikit-learn's definitions, `zero_division=0`). Pure;
//! imports the report types of the parent module.

use std::collections::HashMap;

use super::{AverageMetrics, ConfusionMatrix, EvaluationError, LabelMetrics, ratio, truncate_id};
use crate::cxone::model::{EvaluationLabel, EvaluationResponse};

/// The confusion counts of an evaluation and their row and column sums.
pub(super) struct Tally {
    /// Number of labels.
    n: usize,
    /// Flat n×n confusion matrix, rows = actual.
    cells: Vec<u64>,
    /// Row sums: examples whose actual label is `k`.
    support: Vec<u64>,
    /// Column sums: examples predicted as `k`.
    predicted: Vec<u64>,
    /// Number of examples.
    pub(super) total: u64,
}

impl Tally {
    /// Counts every example (whose lengths were checked) and returns the counts with one
    /// `(score, correct)` pair per example for the threshold sweep; a missing score counts as 1.
    pub(super) fn count(
        resp: &EvaluationResponse,
        index: &HashMap<&str, usize>,
    ) -> Result<(Self, Vec<(f64, bool)>), EvaluationError> {
        let n = index.len();
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
        let mut cells = vec![0u64; n * n];
        let mut scored: Vec<(f64, bool)> = Vec::with_capacity(resp.actuals.len());
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
        let mut support = vec![0u64; n];
        let mut predicted = vec![0u64; n];
        for a in 0..n {
            for p in 0..n {
                let c = cells[a * n + p];
                support[a] += c;
                predicted[p] += c;
            }
        }
        let tally = Self {
            n,
            cells,
            support,
            predicted,
            total: resp.actuals.len() as u64,
        };
        Ok((tally, scored))
    }

    /// Examples predicted as their actual label.
    pub(super) fn correct(&self) -> u64 {
        (0..self.n).map(|k| self.true_positives(k)).sum()
    }

    fn true_positives(&self, k: usize) -> u64 {
        self.cells[k * self.n + k]
    }

    /// Metrics of each label, in `labels` order (including labels with zero support).
    pub(super) fn per_label(&self, labels: &[EvaluationLabel]) -> Vec<LabelMetrics> {
        labels
            .iter()
            .enumerate()
            .map(|(k, label)| {
                let tp = self.true_positives(k);
                LabelMetrics {
                    label: label.id.clone(),
                    precision: ratio(tp, self.predicted[k]),
                    recall: ratio(tp, self.support[k]),
                    f1: ratio(2 * tp, self.support[k] + self.predicted[k]),
                    support: self.support[k],
                }
            })
            .collect()
    }

    /// The macro average (over the labels present in actuals ∪ predictions, as scikit-learn does
    /// without `labels=`) and the support-weighted average.
    pub(super) fn averages(&self, per_label: &[LabelMetrics]) -> (AverageMetrics, AverageMetrics) {
        let mut macro_sum = (0.0, 0.0, 0.0);
        let mut present = 0usize;
        let mut weighted_sum = (0.0, 0.0, 0.0);
        for (k, m) in per_label.iter().enumerate() {
            if self.support[k] > 0 || self.predicted[k] > 0 {
                present += 1;
                macro_sum.0 += m.precision;
                macro_sum.1 += m.recall;
                macro_sum.2 += m.f1;
            }
            let w = self.support[k] as f64;
            weighted_sum.0 += m.precision * w;
            weighted_sum.1 += m.recall * w;
            weighted_sum.2 += m.f1 * w;
        }
        // `present >= 1` because there is at least one example.
        let present_f = present.max(1) as f64;
        let total_f = self.total as f64;
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
        (macro_average, weighted_average)
    }

    /// The counts as rows (actual) of columns (predicted), labelled in `labels` order.
    pub(super) fn confusion_matrix(&self, labels: &[EvaluationLabel]) -> ConfusionMatrix {
        ConfusionMatrix {
            labels: labels.iter().map(|l| l.id.clone()).collect(),
            matrix: self.cells.chunks(self.n).map(<[u64]>::to_vec).collect(),
        }
    }
}
