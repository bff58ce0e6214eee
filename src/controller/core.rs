//! Pure pieces the decisions (`decide/`) are built from: schedules, phase mapping, the
//! idempotency key and run fingerprint, conditions, status summaries, reference checks.
//! No I/O here; everything is a function of its arguments (including `now`).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sha2::{Digest, Sha256};

use super::vocab::{ConditionStatus, ConditionType, Reason};
use crate::crd::{
    EvaluationStatus, LabelEvaluation, Phase, RunHistory, SkillTrainingJobSpec,
    SkillTrainingJobStatus, ThresholdRecommendation,
};
use crate::cxone::model::JobState;
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

/// Default refresh margin before artifact URLs expire.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The poll schedule of a running CXone job: start at `initial`, multiply by `multiplier` after
/// each poll, never above `max` (docs/cxone-api.md: 2 s, ×1.5, 30 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollSchedule {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            multiplier: 1.5,
            max: Duration::from_secs(30),
        }
    }
}

impl PollSchedule {
    /// CXone must never be polled faster than every 2 s.
    pub const FLOOR: Duration = Duration::from_secs(2);

    pub fn from_spec(spec: &SkillTrainingJobSpec) -> Self {
        let d = Self::default();
        let Some(p) = &spec.polling else { return d };
        let initial = p
            .initial_interval_seconds
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(d.initial)
            .max(Self::FLOOR);
        let max = p
            .max_interval_seconds
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(d.max)
            .max(initial);
        let multiplier = p
            .multiplier
            .filter(|m| m.is_finite() && *m >= 1.0)
            .unwrap_or(d.multiplier);
        Self {
            initial,
            multiplier,
            max,
        }
    }

    /// Interval before poll number `attempt` (0-based) after the previous one.
    pub fn interval(&self, attempt: u32) -> Duration {
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64())).max(Self::FLOOR)
    }

    /// Polls this schedule needs to notice completion of a job lasting `job`: the smallest n
    /// with interval(0) + … + interval(n-1) ≥ job, plus the submission itself not counted.
    pub fn polls_needed(&self, job: Duration) -> u32 {
        let mut elapsed = Duration::ZERO;
        let mut n = 0;
        while elapsed < job && n < 1_000_000 {
            elapsed += self.interval(n);
            n += 1;
        }
        n
    }
}

/// Capped exponential backoff with jitter for errors: base × 2^attempt, at most `max`, then
/// scaled into [50 %, 100 %] by `jitter` (a value in [0, 1) from the caller's randomness).
pub fn error_backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
    let capped = exp.min(max.as_secs_f64());
    let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(capped * factor).max(Duration::from_millis(100))
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

/// `Idempotency-Key` of a run: a function of stored state only — the object's uid (another
/// object can never produce it), the run's number (so a later run of the same data gets its own
/// CXone job) and the run's fingerprint. Any replica reconciling any cached copy of the object
/// computes the same key for the same run, so CXone answers a repeated submission with the job it
/// already created.
pub fn idempotency_key(uid: &str, run: i64, fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update([0]);
    h.update(run.to_le_bytes());
    h.update([0]);
    h.update(fingerprint.as_bytes());
    format!("stj-{}", &hex::encode(h.finalize())[..40])
}

/// What a run trains: data, skill, endpoint, hyperparameters and split. Two specs with the same
/// fingerprint train the same model.
pub fn run_fingerprint(spec: &SkillTrainingJobSpec, base_url: &str, digest: &str) -> String {
    let h = spec.hyperparameters();
    let mut s = Sha256::new();
    for part in [
        digest,
        spec.skill_id.as_str(),
        base_url,
        &h.max_epochs.to_string(),
        &h.early_stopping.to_string(),
        &h.patience.to_string(),
        &spec.validation_split().to_string(),
    ] {
        s.update((part.len() as u64).to_le_bytes());
        s.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(s.finalize()))
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

/// Whether a progress change alone (same phase) is worth a status write: never with `step` 0
/// (progress moves with phase changes only); otherwise in steps of at least `step` points.
pub fn progress_worth_writing(old: Option<i32>, new: i32, step: i32) -> bool {
    if step <= 0 {
        return false;
    }
    match old {
        None => true,
        Some(old) => new == 100 || (new - old).abs() >= step,
    }
}

/// When artifact URLs expiring at `expires_at` should be refreshed, relative to `now`
/// (zero: now).
pub fn refresh_in(expires_at: Timestamp, refresh_before: Duration, now: Timestamp) -> Duration {
    let refresh_at = expires_at.as_second() - refresh_before.as_secs() as i64;
    let wait = refresh_at - now.as_second();
    Duration::from_secs(wait.max(0) as u64)
}

/// Object names the job refers to that cannot be used, and features it asks for that this
/// operator was installed without.
pub fn reference_problems(spec: &SkillTrainingJobSpec, artifact_secrets: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |field: String, name: &str| {
        if let Err(e) = crate::names::check_object_name(&field, name) {
            problems.push(e);
        }
    };
    check(
        "spec.connection.credentialsSecretRef.name".into(),
        &spec.connection.credentials_secret_ref.name,
    );
    for (i, src) in spec.utterances_from.iter().enumerate() {
        check(
            format!("spec.utterancesFrom[{i}].configMapKeyRef.name"),
            &src.config_map_key_ref.name,
        );
    }
    if let Some(registry) = &spec.registry {
        for (field, name) in registry.secret_names() {
            check(field.to_string(), name);
        }
    }
    if let Some(name) = spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.as_deref())
    {
        check("spec.artifacts.secretName".into(), name);
        if !artifact_secrets {
            problems.push(
                "spec.artifacts.secretName: this operator is installed without permission to write \
                 Secrets (Helm value artifactSecrets.enabled, flag --enable-artifact-secrets); \
                 remove the field to get the URLs in status, or ask its administrators"
                    .to_string(),
            );
        }
    }
    if let Some(registry) = &spec.registry {
        problems.extend(registry.problems());
    }
    problems
}

/// Shortest wait between two artifact refreshes: URLs that CXone hands out already expired, or a
/// skewed clock, must not make a job export every second.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(30);

/// Time until artifact URLs expiring at `expires_at` need refreshing. URLs that live shorter than
/// twice the margin are refreshed at half their remaining life; never sooner than
/// [`REFRESH_FLOOR`].
pub fn refresh_wait(refresh_before: Duration, expires_at: Timestamp, now: Timestamp) -> Duration {
    let remaining = Duration::from_secs((expires_at.as_second() - now.as_second()).max(0) as u64);
    let margin = refresh_before.min(remaining / 2);
    refresh_in(expires_at, margin, now).max(REFRESH_FLOOR)
}

/// Name of the ConfigMap holding a run's report and audit record. Deterministic, so a retried
/// create finds the one already made; at most 253 characters.
pub fn report_config_map_name(job_name: &str, uid: &str, generation: i64, job_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update(generation.to_le_bytes());
    h.update(job_id.as_bytes());
    let suffix = &hex::encode(h.finalize())[..10];
    let base: String = job_name.chars().take(253 - 1 - 6 - 10 - 1).collect();
    format!("{}-audit-{suffix}", base.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_schedule_follows_the_guide() {
        let s = PollSchedule::default();
        let secs: Vec<f64> = (0..8).map(|i| s.interval(i).as_secs_f64()).collect();
        assert_eq!(
            secs,
            vec![2.0, 3.0, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30.0]
        );
        assert_eq!(s.interval(1000), Duration::from_secs(30));
        // 5 minutes: 2+3+4.5+6.75+10.125+15.1875+22.78125 = 64.34375, then 30 s steps.
        assert_eq!(s.polls_needed(Duration::from_secs(300)), 7 + 8);
        assert_eq!(s.polls_needed(Duration::ZERO), 0);
    }

    #[test]
    fn poll_schedule_from_spec_respects_the_floor() {
        let mut spec: SkillTrainingJobSpec = serde_json::from_value(serde_json::json!({
            "skillId": "s", "connection": {"region": "r", "credentialsSecretRef": {"name": "c"}},
            "language": "en", "labels": [{"id": "a", "name": "A"}],
            "polling": {"initialIntervalSeconds": 1, "multiplier": 0.5, "maxIntervalSeconds": 1}
        }))
        .unwrap();
        let s = PollSchedule::from_spec(&spec);
        assert_eq!(s.initial, Duration::from_secs(2));
        assert_eq!(s.max, Duration::from_secs(2));
        assert_eq!(s.multiplier, 1.5);
        spec.polling = None;
        assert_eq!(PollSchedule::from_spec(&spec), PollSchedule::default());
    }

    #[test]
    fn error_backoff_is_capped_and_jittered() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(error_backoff(0, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(error_backoff(0, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(error_backoff(3, base, max, 1.0), Duration::from_secs(8));
        assert_eq!(error_backoff(20, base, max, 1.0), max);
        assert_eq!(error_backoff(20, base, max, 0.0), max / 2);
    }

    #[test]
    fn remote_states_map_to_phases() {
        assert_eq!(phase_for(JobState::Provisioning), Phase::Queued);
        assert_eq!(phase_for(JobState::Completed), Phase::Exporting);
        assert_eq!(phase_for(JobState::Failed), Phase::Failed);
    }

    #[test]
    fn idempotency_keys_are_a_function_of_stored_state() {
        let k = idempotency_key("uid-1", 1, "sha256:a");
        // The same snapshot, reconciled twice (or by two replicas, or at another time): one key.
        assert_eq!(k, idempotency_key("uid-1", 1, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-2", 1, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-1", 2, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-1", 1, "sha256:b"));
        assert_eq!(k.len(), 44);
    }

    #[test]
    fn fingerprint_ignores_operational_fields() {
        let mut spec: SkillTrainingJobSpec = serde_json::from_value(serde_json::json!({
            "skillId": "s", "connection": {"region": "r", "credentialsSecretRef": {"name": "c"}},
            "language": "en", "labels": [{"id": "a", "name": "A"}]
        }))
        .unwrap();
        let f = run_fingerprint(&spec, "https://x/", "sha256:d");
        spec.suspend = Some(true);
        spec.polling = Some(Default::default());
        spec.deletion_policy = Some(crate::crd::DeletionPolicy::Orphan);
        assert_eq!(run_fingerprint(&spec, "https://x/", "sha256:d"), f);
        assert_ne!(run_fingerprint(&spec, "https://x/", "sha256:e"), f);
        spec.hyperparameters = Some(crate::crd::HyperparametersSpec {
            max_epochs: Some(10),
            ..Default::default()
        });
        assert_ne!(run_fingerprint(&spec, "https://x/", "sha256:d"), f);
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
    fn progress_writes_are_bounded() {
        assert!(
            !progress_worth_writing(Some(3), 90, 0),
            "0: phase changes only"
        );
        assert!(progress_worth_writing(None, 3, 25));
        assert!(!progress_worth_writing(Some(3), 20, 25));
        assert!(progress_worth_writing(Some(3), 28, 25));
        assert!(progress_worth_writing(Some(90), 100, 25));
    }

    #[test]
    fn refresh_time_is_before_expiry() {
        let now = Timestamp::from_second(10_000).unwrap();
        let exp = Timestamp::from_second(13_600).unwrap();
        assert_eq!(
            refresh_in(exp, Duration::from_secs(300), now),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_in(now, Duration::from_secs(300), now),
            Duration::ZERO
        );
    }

    #[test]
    fn report_names_are_valid_and_stable() {
        let long = "a".repeat(253);
        let n = report_config_map_name(&long, "uid", 1, "job-1");
        assert!(n.len() <= 253, "{}", n.len());
        assert_eq!(n, report_config_map_name(&long, "uid", 1, "job-1"));
        assert_ne!(n, report_config_map_name(&long, "uid", 2, "job-1"));
        assert!(report_config_map_name("faq", "u", 1, "j").starts_with("faq-audit-"));
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

    fn spec(extra: serde_json::Value) -> SkillTrainingJobSpec {
        let mut spec = serde_json::json!({
            "skillId": "s", "language": "en", "labels": [{"id": "a", "name": "A"}],
            "connection": {"region": "r", "credentialsSecretRef": {"name": "cxone-credentials"}},
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn names_that_would_change_an_api_path_are_refused_before_any_read() {
        assert!(reference_problems(&spec(serde_json::json!({})), false).is_empty());
        for bad in [
            "cxone-credentials?watch=true",
            "../x",
            "../../ns/secrets/stolen",
            "?watch=true",
            "A",
        ] {
            let s = spec(serde_json::json!({
                "connection": {"region": "r", "credentialsSecretRef": {"name": bad}},
                "utterancesFrom": [{"configMapKeyRef": {"name": bad, "key": "k"}, "format": "jsonl"}],
            }));
            let problems = reference_problems(&s, false);
            assert_eq!(problems.len(), 2, "{bad}: {problems:?}");
            assert!(problems[0].starts_with("spec.connection.credentialsSecretRef.name"));
            assert!(problems[1].starts_with("spec.utterancesFrom[0].configMapKeyRef.name"));
        }
    }

    #[test]
    fn an_artifact_secret_needs_the_feature_and_a_valid_name() {
        let s = spec(serde_json::json!({"artifacts": {"secretName": "urls"}}));
        let problems = reference_problems(&s, false);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("--enable-artifact-secrets"));
        assert!(reference_problems(&s, true).is_empty());
        let s = spec(serde_json::json!({"artifacts": {"secretName": "../urls"}}));
        assert_eq!(reference_problems(&s, true).len(), 1);
    }

    #[test]
    fn artifact_refresh_never_storms() {
        let now = Timestamp::from_second(10_000).unwrap();
        let margin = Duration::from_secs(300);
        let at = |s: i64| Timestamp::from_second(10_000 + s).unwrap();
        assert_eq!(
            refresh_wait(margin, at(3600), now),
            Duration::from_secs(3300)
        );
        // Short-lived URLs: half their life.
        assert_eq!(refresh_wait(margin, at(400), now), Duration::from_secs(200));
        // Already expired, about to expire, or a skewed clock: the floor, not a second.
        for s in [-3600, -1, 0, 1, 10, 59] {
            assert_eq!(refresh_wait(margin, at(s), now), REFRESH_FLOOR, "{s}");
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(0.833333), "0.8333");
        assert_eq!(decimal(f64::NAN), "NaN");
    }
}
