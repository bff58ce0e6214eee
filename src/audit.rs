//! Governance audit records: one versioned JSON document per finished training run.
//!
//! Every compliance flag is derived from a check that actually ran (validation checks, the
//! comparison of server metrics with recomputed ones, the scan for signed URLs in the record
//! itself). Signed artifact URLs never appear in a record; only their expiry does.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cxone::model::Hyperparameters;
use crate::evaluation::{AverageMetrics, EvaluationReport, LabelMetrics, Recommendation};
use crate::training::{Check, DatasetDigest, ValidationReport};

/// Schema identifier of the record format; bump on incompatible changes.
pub const AUDIT_SCHEMA: &str = "audit.ai.cxone.io/v1";

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunResult {
    /// Trained, evaluated and exported.
    Succeeded,
    /// CXone reported the job FAILED, or it was rejected or timed out.
    Failed,
    /// The job was cancelled (deletion, a newer generation, or the active deadline).
    Cancelled,
    /// Validation failed; nothing was submitted.
    Rejected,
}

/// Which Kubernetes object and which CXone job the run belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub skill_id: String,
    /// CXone API base URL the run was sent to.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cxone_job_id: Option<String>,
}

/// The data the run used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRecord {
    pub digest: Option<DatasetDigest>,
    pub language: Option<String>,
    pub utterances: usize,
    pub labels: usize,
    /// Utterances per label id.
    pub label_counts: BTreeMap<String, usize>,
}

/// A check and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    pub name: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The check could not be decided (e.g. the server reported nothing to compare); `passed`
    /// is then false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

/// Summary flags, each the outcome of checks listed in `checks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceFlags {
    /// Every data validation check ran and passed.
    pub data_validation_passed: bool,
    /// The class-balance check ran and passed.
    pub class_balance_checked: bool,
    /// The language-code and single-language checks ran and passed.
    pub language_constraint_enforced: bool,
    /// Server-reported metrics were recomputed and agree (false when no evaluation was analysed,
    /// or when the server reported no summary to compare: see the `metrics.serverAgreement`
    /// check).
    pub metrics_verified: bool,
    /// The record was scanned and holds none of the run's signed URLs.
    pub signed_urls_redacted: bool,
}

/// Evaluation summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRecord {
    pub examples: u64,
    pub accuracy: f64,
    pub macro_average: AverageMetrics,
    pub weighted_average: AverageMetrics,
    pub per_label: Vec<LabelMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_recommendation: Option<Recommendation>,
}

/// Compute units of the CXone job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeRecord {
    pub allocated: f64,
    pub used: f64,
}

/// Times of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub schema: String,
    pub recorded_at: Timestamp,
    pub operator_version: String,
    pub job: JobIdentity,
    pub result: RunResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub dataset: DatasetRecord,
    pub checks: Vec<CheckRecord>,
    pub compliance: ComplianceFlags,
    pub hyperparameters: Hyperparameters,
    pub validation_split: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsRecord>,
    /// When the exported artifact URLs expire (the URLs themselves are never recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_expire_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_units: Option<ComputeRecord>,
    pub timeline: Timeline,
    /// Where the model was registered and what the promotion gate decided (`spec.registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryRecord>,
}

/// The registration of a run's model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryRecord {
    /// The declared gate (thresholds, champion comparison); `None`: no gate, nothing promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<crate::crd::PromotionSpec>,
    /// The recomputed metrics the gate read.
    pub inputs: std::collections::BTreeMap<String, f64>,
    pub targets: Vec<RegistryTargetRecord>,
}

/// One registry's record of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryTargetRecord {
    /// `oci` or `mlflow`.
    pub target: String,
    /// The OCI repository or the MLflow tracking server and model name.
    pub location: String,
    /// `repo@sha256:…` or `models:/<name>/<version>`; absent when registration did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_as: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// The gate's outcome in this registry: each check with its input and threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The model's files in this registry: weights, configuration, the model card
    /// (`README.md`) and, when signed, the signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// `sha256:` of the public PEM of the key the model was signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// The signature: OCI, its referrer's digest; MLflow, `model.sig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What a record is built from.
pub struct AuditInput<'a> {
    pub job: JobIdentity,
    pub result: RunResult,
    pub reason: Option<String>,
    pub validation: &'a ValidationReport,
    pub digest: Option<&'a DatasetDigest>,
    pub label_count: usize,
    pub hyperparameters: &'a Hyperparameters,
    pub validation_split: f64,
    pub evaluation: Option<&'a EvaluationReport>,
    pub artifacts_expire_at: Option<Timestamp>,
    /// The signed URLs handed out for this run; the record is checked not to contain them.
    pub signed_urls: &'a [&'a str],
    pub training_duration_seconds: Option<f64>,
    pub compute_units: Option<ComputeRecord>,
    pub timeline: Timeline,
    pub registry: Option<RegistryRecord>,
    pub now: Timestamp,
}

fn check_name(check: Check) -> String {
    // serde's camelCase name of the check, e.g. "classBalance".
    serde_json::to_value(check)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{check:?}"))
}

impl AuditRecord {
    pub fn build(input: AuditInput<'_>) -> Self {
        let v = input.validation;
        let mut checks: Vec<CheckRecord> = v
            .checks
            .iter()
            .map(|c| CheckRecord {
                name: format!("data.{}", check_name(c.check)),
                passed: c.passed,
                detail: (!c.passed).then(|| format!("{} violations", c.violations)),
                unknown: false,
            })
            .collect();
        let ran_and_passed = |check: Check| v.passed(check);
        let data_validation_passed = !v.checks.is_empty() && v.checks.iter().all(|c| c.passed);
        let metrics_verified = match input.evaluation {
            Some(e) => {
                let comparison = &e.server_comparison;
                checks.push(CheckRecord {
                    name: "metrics.serverAgreement".into(),
                    passed: comparison.agrees(),
                    detail: match comparison.consistent {
                        Some(true) if comparison.not_reported.is_empty() => None,
                        Some(false) => Some(comparison.mismatches.join("; ")),
                        Some(true) | None => Some(comparison.describe()),
                    },
                    unknown: comparison.consistent.is_none(),
                });
                comparison.agrees()
            }
            None => false,
        };
        let mut record = AuditRecord {
            schema: AUDIT_SCHEMA.to_string(),
            recorded_at: input.now,
            operator_version: env!("CARGO_PKG_VERSION").to_string(),
            job: input.job,
            result: input.result,
            reason: input.reason,
            dataset: DatasetRecord {
                digest: input.digest.cloned(),
                language: v.language.clone(),
                utterances: v.utterance_count,
                labels: input.label_count,
                label_counts: v.label_counts.clone(),
            },
            checks,
            compliance: ComplianceFlags {
                data_validation_passed,
                class_balance_checked: ran_and_passed(Check::ClassBalance),
                language_constraint_enforced: ran_and_passed(Check::LanguageCodes)
                    && ran_and_passed(Check::SingleLanguage),
                metrics_verified,
                signed_urls_redacted: false,
            },
            hyperparameters: input.hyperparameters.clone(),
            validation_split: input.validation_split,
            metrics: input.evaluation.map(|e| MetricsRecord {
                examples: e.total,
                accuracy: e.accuracy,
                macro_average: e.macro_average,
                weighted_average: e.weighted_average,
                per_label: e.per_label.clone(),
                threshold_recommendation: e.recommendation,
            }),
            artifacts_expire_at: input.artifacts_expire_at,
            training_duration_seconds: input.training_duration_seconds,
            compute_units: input.compute_units,
            timeline: input.timeline,
            registry: input.registry,
        };
        let redacted = record.scan_for(input.signed_urls);
        record.checks.push(CheckRecord {
            name: "artifacts.signedUrlsRedacted".into(),
            passed: redacted,
            detail: None,
            unknown: false,
        });
        record.compliance.signed_urls_redacted = redacted;
        record
    }

    /// True when the serialised record contains none of `secrets` (nor their query strings,
    /// which carry the signatures).
    fn scan_for(&self, secrets: &[&str]) -> bool {
        let Ok(text) = serde_json::to_string(self) else {
            return false;
        };
        secrets.iter().filter(|s| !s.is_empty()).all(|s| {
            let query = s.split_once('?').map(|(_, q)| q).unwrap_or("");
            !text.contains(*s) && (query.is_empty() || !text.contains(query))
        })
    }

    /// The record as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"schema\":\"{AUDIT_SCHEMA}\",\"error\":\"cannot encode record: {e}\"}}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxone::model::{EvaluationLabel, EvaluationResponse, LabelDef, Utterance};
    use crate::evaluation::{EvaluationOptions, analyze};
    use crate::training::{Dataset, ValidationRules, validate};

    fn dataset(imbalanced: bool) -> Dataset {
        let mut d = Dataset::new(
            Some("en".into()),
            ["a", "b"]
                .iter()
                .map(|id| LabelDef {
                    id: id.to_string(),
                    name: id.to_string(),
                    description: None,
                })
                .collect(),
        );
        let n_a = if imbalanced { 8 } else { 2 };
        let texts = (0..n_a)
            .map(|i| (format!("alpha {i}"), "a"))
            .chain((0..2).map(|i| (format!("beta {i}"), "b")));
        d.extend_inline(
            "utterances",
            texts.map(|(text, label)| Utterance {
                text,
                label: label.into(),
                language: None,
            }),
        );
        d
    }

    fn evaluation(server_precision: Option<f64>) -> EvaluationReport {
        let resp = EvaluationResponse {
            labels: ["a", "b"]
                .iter()
                .map(|id| EvaluationLabel {
                    id: id.to_string(),
                    name: id.to_string(),
                })
                .collect(),
            actuals: vec!["a".into(), "b".into()],
            predictions: vec!["a".into(), "b".into()],
            scores: vec![0.9, 0.8],
            precision: server_precision,
            recall: server_precision.map(|_| 1.0),
            confusion_matrix: server_precision.map(|_| vec![vec![1, 0], vec![0, 1]]),
            training_duration_seconds: 3.0,
        };
        analyze(&resp, &EvaluationOptions::default()).unwrap()
    }

    fn input<'a>(
        report: &'a ValidationReport,
        eval: Option<&'a EvaluationReport>,
        urls: &'a [&'a str],
        hp: &'a Hyperparameters,
    ) -> AuditInput<'a> {
        AuditInput {
            job: JobIdentity {
                namespace: "ns".into(),
                name: "faq".into(),
                uid: "uid-1".into(),
                generation: 2,
                skill_id: "skill-1".into(),
                endpoint: "https://api.us2-01.cxone.com/".into(),
                cxone_job_id: Some("job-1".into()),
            },
            result: RunResult::Succeeded,
            reason: None,
            validation: report,
            digest: None,
            label_count: 2,
            hyperparameters: hp,
            validation_split: 0.2,
            evaluation: eval,
            artifacts_expire_at: None,
            signed_urls: urls,
            training_duration_seconds: Some(3.0),
            compute_units: None,
            timeline: Timeline::default(),
            registry: None,
            now: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn flags_follow_the_checks_that_ran() {
        let valid = validate(dataset(false), &ValidationRules::default()).unwrap();
        let eval = evaluation(Some(1.0));
        let hp = Hyperparameters::default();
        let r = AuditRecord::build(input(valid.report(), Some(&eval), &[], &hp));
        assert_eq!(
            r.compliance,
            ComplianceFlags {
                data_validation_passed: true,
                class_balance_checked: true,
                language_constraint_enforced: true,
                metrics_verified: true,
                signed_urls_redacted: true,
            }
        );
        assert!(
            r.checks
                .iter()
                .any(|c| c.name == "data.classBalance" && c.passed)
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["schema"], AUDIT_SCHEMA);
        assert_eq!(json["dataset"]["labelCounts"]["a"], 2);
    }

    #[test]
    fn failed_checks_and_disagreeing_metrics_clear_their_flags() {
        let rejected = validate(dataset(true), &ValidationRules::default()).unwrap_err();
        let eval = evaluation(Some(0.5));
        let hp = Hyperparameters::default();
        let r = AuditRecord::build(input(&rejected.report, Some(&eval), &[], &hp));
        assert!(!r.compliance.data_validation_passed);
        assert!(!r.compliance.class_balance_checked);
        assert!(r.compliance.language_constraint_enforced);
        assert!(!r.compliance.metrics_verified);
        let agreement = r
            .checks
            .iter()
            .find(|c| c.name == "metrics.serverAgreement")
            .unwrap();
        assert!(agreement.detail.as_deref().unwrap().contains("precision"));
    }

    #[test]
    fn signed_urls_are_detected_if_they_leak_into_the_record() {
        let valid = validate(dataset(false), &ValidationRules::default()).unwrap();
        let hp = Hyperparameters::default();
        let url = "https://x/model?expires=1&signature=abc";
        let urls = [url];
        let clean = AuditRecord::build(input(valid.report(), None, &urls, &hp));
        assert!(clean.compliance.signed_urls_redacted);
        assert!(!clean.compliance.metrics_verified, "no evaluation analysed");
        let mut leaky = input(valid.report(), None, &urls, &hp);
        leaky.reason = Some(format!("download {url}"));
        assert!(!AuditRecord::build(leaky).compliance.signed_urls_redacted);
    }

    #[test]
    fn an_unreported_server_summary_is_unknown_not_agreement() {
        let valid = validate(dataset(false), &ValidationRules::default()).unwrap();
        let eval = evaluation(None);
        let hp = Hyperparameters::default();
        let r = AuditRecord::build(input(valid.report(), Some(&eval), &[], &hp));
        assert!(!r.compliance.metrics_verified);
        assert!(r.compliance.data_validation_passed);
        let agreement = r
            .checks
            .iter()
            .find(|c| c.name == "metrics.serverAgreement")
            .unwrap();
        assert!(!agreement.passed && agreement.unknown);
        let detail = agreement.detail.as_deref().unwrap();
        assert!(
            detail.starts_with(
                "unknown: not reported by the server (precision, recall, confusionMatrix)"
            ),
            "{detail}"
        );
        // Decided checks do not carry the flag; the record says it only when it is set.
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let checks = json["checks"].as_array().unwrap();
        assert_eq!(
            checks.iter().filter(|c| c.get("unknown").is_some()).count(),
            1
        );
        assert_eq!(
            json["metrics"]["accuracy"], 1.0,
            "metrics are still recorded"
        );
    }
}
