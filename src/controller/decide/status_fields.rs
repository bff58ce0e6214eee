//! How status fields are written: their size limits, remote text made fit, the phase of a remote
//! state, conditions, numbers, the evaluation summary and the bounded run history. Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::controller::conditions::{ConditionStatus, ConditionType, Reason};
use crate::crd::{
    EvaluationStatus, LabelEvaluation, Phase, RunHistory, SkillTrainingJobStatus,
    ThresholdRecommendation,
};
use crate::cxone::model::{JobState, JobStatus};
use crate::evaluation::EvaluationReport;

/// Runs kept in `status.history`.
pub const HISTORY_LIMIT: usize = 5;

/// Confusion matrices of at most this many labels go into status (the full one is in the report).
pub const STATUS_MATRIX_MAX_LABELS: usize = 10;

/// Longest condition message written (the API server allows 32 KiB).
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Longest CXone `stage` text kept in status.
pub const MAX_STAGE_CHARS: usize = 200;

/// Longest CXone `failureReason` text kept in status.
pub const MAX_FAILURE_REASON_CHARS: usize = 1000;

/// Text from CXone as status may carry it: control characters replaced, at most `max_chars`.
pub fn clip_remote_text(text: &str, max_chars: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::truncate_chars(clean.trim(), max_chars)
}

/// The operator phase for a CXone job state.
pub fn phase_for(state: JobState) -> Phase {
    match state {
        JobState::Queued | JobState::Provisioning => Phase::Queued,
        JobState::Training => Phase::Training,
        JobState::Evaluating => Phase::Evaluating,
        JobState::Completed => Phase::Exporting,
        JobState::Failed => Phase::Failed,
        JobState::Cancelled => Phase::Cancelled,
    }
}

/// Sets a condition, keeping `lastTransitionTime` when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let message = crate::text::truncate_chars(message, MAX_MESSAGE_CHARS);
    let (type_, status, reason) = (type_.as_str(), status.as_str(), reason.as_str());
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status.to_string();
        c.reason = reason.to_string();
        c.message = message;
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        });
        conditions.sort_by_key(|c| condition_rank(&c.type_));
    }
}

fn condition_rank(type_: &str) -> usize {
    ConditionType::ALL
        .iter()
        .position(|t| t.as_str() == type_)
        .unwrap_or(usize::MAX)
}

pub fn condition(status: &SkillTrainingJobStatus, type_: ConditionType) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Decimal string with four places, as status carries metrics.
pub fn decimal(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "NaN".to_string()
    }
}

/// The status summary of an evaluation report.
pub fn evaluation_status(report: &EvaluationReport, config_map: &str) -> EvaluationStatus {
    let small = report.confusion_matrix.labels.len() <= STATUS_MATRIX_MAX_LABELS;
    EvaluationStatus {
        examples: report.total as i64,
        accuracy: decimal(report.accuracy),
        macro_precision: decimal(report.macro_average.precision),
        macro_recall: decimal(report.macro_average.recall),
        macro_f1: decimal(report.macro_average.f1),
        weighted_f1: decimal(report.weighted_average.f1),
        per_label: if report.per_label.len() <= 50 {
            report
                .per_label
                .iter()
                .map(|l| LabelEvaluation {
                    label: l.label.clone(),
                    precision: decimal(l.precision),
                    recall: decimal(l.recall),
                    f1: decimal(l.f1),
                    support: l.support as i64,
                })
                .collect()
        } else {
            Vec::new()
        },
        confusion_matrix_labels: if small {
            report.confusion_matrix.labels.clone()
        } else {
            Vec::new()
        },
        confusion_matrix: if small {
            report
                .confusion_matrix
                .matrix
                .iter()
                .map(|row| row.iter().map(|&c| c as i64).collect())
                .collect()
        } else {
            Vec::new()
        },
        recommended_threshold: report.recommendation.map(|r| ThresholdRecommendation {
            threshold: format!("{:.2}", r.threshold),
            precision: decimal(r.precision),
            f1: decimal(r.f1),
            coverage: decimal(r.coverage),
            objective: r.objective.as_str().to_string(),
        }),
        server_metrics_consistent: report.server_comparison.consistent,
        report_config_map: config_map.to_string(),
    }
}

/// Appends a run to the history, keeping the newest `HISTORY_LIMIT`.
pub fn push_history(history: &mut Vec<RunHistory>, entry: RunHistory) {
    // The same run is recorded once, even if a status write is retried.
    if history.iter().any(|h| {
        h.generation == entry.generation && h.job_id == entry.job_id && entry.job_id.is_some()
    }) {
        return;
    }
    history.push(entry);
    let excess = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..excess);
}

/// Copies what CXone reported into status fields.
pub fn apply_remote(next: &mut SkillTrainingJobStatus, remote: &JobStatus) {
    next.stage =
        (!remote.stage.is_empty()).then(|| clip_remote_text(&remote.stage, MAX_STAGE_CHARS));
    next.compute_units_allocated = Some(decimal(remote.compute_units_allocated));
    next.compute_units_used = Some(decimal(remote.compute_units_used));
    if let Some(t) = remote.started_at {
        next.started_at = Some(Time(t));
    }
    if let Some(t) = remote.completed_at {
        next.completed_at = Some(Time(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_states_map_to_phases() {
        assert_eq!(phase_for(JobState::Provisioning), Phase::Queued);
        assert_eq!(phase_for(JobState::Completed), Phase::Exporting);
        assert_eq!(phase_for(JobState::Failed), Phase::Failed);
    }

    #[test]
    fn conditions_keep_transition_time_unless_status_changes() {
        use ConditionStatus::{False, True};
        use ConditionType::{Ready, Validated};
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set_condition(
            &mut c,
            Ready,
            False,
            Reason::Training,
            "training",
            Some(1),
            t0,
        );
        set_condition(
            &mut c,
            Validated,
            True,
            Reason::ValidationPassed,
            "ok",
            Some(1),
            t0,
        );
        assert_eq!(
            c[0].type_, "Validated",
            "conditions are kept in a stable order"
        );
        set_condition(
            &mut c,
            Ready,
            False,
            Reason::Evaluating,
            "evaluating",
            Some(2),
            t1,
        );
        let ready = c.iter().find(|x| x.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Time(t0));
        assert_eq!(ready.reason, "Evaluating");
        assert_eq!(ready.observed_generation, Some(2));
        set_condition(
            &mut c,
            Ready,
            True,
            Reason::ArtifactsAvailable,
            "done",
            Some(2),
            t1,
        );
        let ready = c.iter().find(|x| x.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Time(t1));
    }

    #[test]
    fn history_is_bounded_and_deduplicated() {
        let mut h = Vec::new();
        for g in 0..8 {
            let entry = RunHistory {
                generation: g,
                job_id: Some(format!("job-{g}")),
                dataset_digest: None,
                phase: Phase::Succeeded,
                macro_f1: None,
                completed_at: None,
                message: None,
            };
            push_history(&mut h, entry.clone());
            push_history(&mut h, entry);
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h.first().unwrap().generation, 3);
        assert_eq!(h.last().unwrap().generation, 7);
    }

    #[test]
    fn remote_text_is_clipped_and_cleaned() {
        let huge = "x".repeat(10 * 1024 * 1024);
        assert!(clip_remote_text(&huge, MAX_STAGE_CHARS).chars().count() <= MAX_STAGE_CHARS + 1);
        assert_eq!(clip_remote_text("a\nb\u{0}c", 50), "a b c");
        let wide = "é".repeat(5000);
        assert!(
            clip_remote_text(&wide, MAX_FAILURE_REASON_CHARS)
                .chars()
                .count()
                <= 1001
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(0.833333), "0.8333");
        assert_eq!(decimal(f64::NAN), "NaN");
    }
}
