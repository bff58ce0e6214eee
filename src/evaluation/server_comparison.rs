//! The comparison of the server's summary metrics (macro precision and recall, confusion
//! matrix) with the ones recomputed from the per-example results. Pure; imports the report
//! types of the parent module.

use serde::{Deserialize, Serialize};

use super::{AverageMetrics, ConfusionMatrix, truncate_id};
use crate::cxone::model::EvaluationResponse;

/// Absolute tolerance used when comparing the server's macro precision/recall with ours.
pub const SERVER_TOLERANCE: f64 = 1e-6;

/// At most this many individual confusion-matrix differences are listed (then a summary line).
pub(super) const MAX_MATRIX_MISMATCHES: usize = 20;

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

/// Compares what the server reported with what [`super::analyze`] recomputed: the macro
/// averages within [`SERVER_TOLERANCE`], the confusion matrix cell by cell.
pub(super) fn compare_with_server(
    resp: &EvaluationResponse,
    ours: &AverageMetrics,
    cm: &ConfusionMatrix,
) -> ServerComparison {
    let mut mismatches = Vec::new();
    let mut not_reported = Vec::new();
    compare_averages(resp, ours, &mut mismatches, &mut not_reported);
    let server: &[Vec<u64>] = resp.confusion_matrix.as_deref().unwrap_or_default();
    if server.is_empty() {
        not_reported.push("confusionMatrix".to_string());
    } else {
        mismatches.extend(matrix_mismatches(server, cm));
    }

    // Nothing reported, nothing compared: unknown, not "consistent".
    let consistent = (not_reported.len() < 3).then_some(mismatches.is_empty());
    ServerComparison {
        consistent,
        mismatches,
        not_reported,
    }
}

/// The server's macro precision and recall against ours; a field the server left out is noted
/// as not reported.
fn compare_averages(
    resp: &EvaluationResponse,
    ours: &AverageMetrics,
    mismatches: &mut Vec<String>,
    not_reported: &mut Vec<String>,
) {
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
}

/// The differences between a (non-empty) server matrix and ours: a wrong number of rows, else
/// the rows of the wrong width, else the cells that differ.
fn matrix_mismatches(server: &[Vec<u64>], cm: &ConfusionMatrix) -> Vec<String> {
    let n = cm.labels.len();
    if server.len() != n {
        return vec![format!(
            "server-reported confusion matrix has {} rows, expected {n} (one per label)",
            server.len()
        )];
    }
    let bad_rows: Vec<usize> = (0..n).filter(|&a| server[a].len() != n).collect();
    if !bad_rows.is_empty() {
        return capped_listing(bad_rows.into_iter(), |a| {
            format!(
                "server-reported confusion matrix row {a} (actual {:?}) has {} columns, \
                 expected {n} (one per label)",
                truncate_id(&cm.labels[a]),
                server[a].len()
            )
        });
    }
    let differing_cells =
        server
            .iter()
            .zip(&cm.matrix)
            .enumerate()
            .flat_map(|(a, (row_s, row_r))| {
                row_s
                    .iter()
                    .zip(row_r)
                    .enumerate()
                    .filter(|(_, (s, r))| s != r)
                    .map(move |(p, (&s, &r))| (a, p, s, r))
            });
    capped_listing(differing_cells, |(a, p, s, r)| {
        format!(
            "server-reported confusion matrix cell [actual {:?}, predicted {:?}] \
             (row {a}, column {p}) is {s}, recomputed {r}",
            truncate_id(&cm.labels[a]),
            truncate_id(&cm.labels[p]),
        )
    })
}

/// One line for each of the first [`MAX_MATRIX_MISMATCHES`] differences, then one line counting
/// the rest (only the listed ones are formatted).
fn capped_listing<T>(
    mut differences: impl Iterator<Item = T>,
    describe: impl Fn(T) -> String,
) -> Vec<String> {
    let mut lines: Vec<String> = differences
        .by_ref()
        .take(MAX_MATRIX_MISMATCHES)
        .map(describe)
        .collect();
    let unlisted = differences.count();
    if unlisted > 0 {
        lines.push(format!(
            "… and {unlisted} more confusion matrix differences"
        ));
    }
    lines
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
