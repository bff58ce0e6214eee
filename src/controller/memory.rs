//! What the operator remembers about a job between reconciliations, kept in the process only.
//!
//! Invariants (the decision tests hold the core to them):
//! - Nothing here is needed for correctness. A restart starts with every job's memory empty, and
//!   the decision from status alone is then the same remote effect or a safe re-observation (a
//!   poll, an evaluation fetched again); never a second submission, since the idempotency key and
//!   the run's endpoint and Secret are in status.
//! - [`JobMemory`] is decision memory: only [`super::decide`] changes it, by returning the next
//!   one. The I/O caches beside it ([`ResolvedData`], rate-limit reservations, credentials) are the
//!   driver's, keyed separately, so an I/O step can never overwrite what a decision remembered.
//! - Memory of a job is dropped when the job is deleted (or its cleanup gives up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cxone::model::{ExportResponse, JobStatus};
use crate::evaluation::EvaluationReport;
use crate::training::{DatasetDigest, Validated, ValidationReport};

use super::conditions::Reason;

/// Decision memory of one job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobMemory {
    /// Polls of the current run so far: where it is in the poll schedule (empty memory: the
    /// schedule starts over at its shortest interval, one extra poll at most).
    pub poll_attempt: u32,
    /// Consecutive failed CXone calls: the error backoff, and when a transient problem is shown
    /// in the Ready condition.
    pub error_attempt: u32,
    /// Failed attempts to cancel on deletion.
    pub cleanup_attempt: u32,
    /// The last Warning Event's key, so a persisting problem is reported once.
    pub last_warning: Option<String>,
    /// What is known of a completed CXone job while its evaluation and export are fetched, so a
    /// rate limit or error in between resumes instead of starting over.
    pub completion: Option<CompletedJob>,
    /// A run being ended: its audit record is written before the status that names it.
    pub recording_end: Option<Arc<EndRecording>>,
    /// The data must be read in full at the next reconciliation (a recorded digest did not
    /// suffice).
    pub read_data: bool,
    /// Fresh artifact URLs of a finished run, while they are written into its Secret.
    pub refreshing: Option<ExportResponse>,
    /// (idempotency key, CXone job id) a lookup found for a submission whose answer was lost,
    /// so the cancel that follows does not need to look again.
    pub found: Option<(String, String)>,
}

/// A completed CXone job on its way to Succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletedJob {
    pub job_id: String,
    pub remote: JobStatus,
    pub analysis: Option<Arc<EvaluationReport>>,
    pub training_duration_seconds: Option<f64>,
    /// The artifact URLs of the run while it is registered (`spec.registry`).
    pub export: Option<ExportResponse>,
}

/// Which of a run's end records is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStage {
    /// The audit ConfigMap is being written.
    Report,
    /// The artifact URLs are being written into the job's Secret.
    ArtifactSecret,
}

/// A run that ended, with everything its final status needs.
#[derive(Clone, Debug, PartialEq)]
pub struct EndRecording {
    pub stage: RecordStage,
    pub phase: crate::crd::Phase,
    pub reason: Reason,
    pub message: String,
    pub job_id: Option<String>,
    pub remote: Option<JobStatus>,
    pub analysis: Option<Arc<EvaluationReport>>,
    pub training_duration_seconds: Option<f64>,
    pub export: Option<ExportResponse>,
    pub digest: Option<String>,
    pub report_name: String,
    pub report_data: std::collections::BTreeMap<String, String>,
}

/// A job's resolved and validated data, cached by what it was computed from.
#[derive(Clone)]
pub struct ResolvedData {
    /// generation + (ConfigMap, resourceVersion) of every source.
    pub key: String,
    pub outcome: Arc<DataOutcome>,
}

/// The job's training data as the decision sees it.
pub enum DataOutcome {
    Valid {
        digest: DatasetDigest,
        report: ValidationReport,
        /// "N utterances, M labels, language L, digest sha256:…"
        summary: String,
        /// Labels defined for the run.
        label_count: usize,
        /// The dataset itself, kept only until the run is submitted (memory stays small with
        /// thousands of finished jobs); resolved again if it is needed later.
        validated: Option<Box<Validated>>,
    },
    Invalid {
        problems: Vec<String>,
    },
    /// Not read: the spec's references are not usable names.
    NotRead,
    /// Not read again: the job's run is over and its sources are the ones recorded with it
    /// (`status.dataSourceKey`), so the recorded digest stands for them.
    Unchanged {
        digest: String,
    },
}

impl ResolvedData {
    /// The same result without the dataset.
    pub fn without_dataset(&self) -> Self {
        let outcome = match &*self.outcome {
            DataOutcome::Valid {
                digest,
                report,
                summary,
                label_count,
                ..
            } => Arc::new(DataOutcome::Valid {
                digest: digest.clone(),
                report: report.clone(),
                summary: summary.clone(),
                label_count: *label_count,
                validated: None,
            }),
            _ => self.outcome.clone(),
        };
        Self {
            key: self.key.clone(),
            outcome,
        }
    }
}

/// Per-job entries by uid, shared by the workers.
pub struct Memories<T>(Mutex<HashMap<String, T>>);

impl<T: Clone> Memories<T> {
    pub fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    pub fn get(&self, uid: &str) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    pub fn set(&self, uid: &str, value: T) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), value);
    }

    pub fn update<R>(&self, uid: &str, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = map.remove(uid);
        let r = f(&mut entry);
        if let Some(v) = entry {
            map.insert(uid.to_string(), v);
        }
        r
    }

    pub fn remove(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

impl<T: Clone> Default for Memories<T> {
    fn default() -> Self {
        Self::new()
    }
}
