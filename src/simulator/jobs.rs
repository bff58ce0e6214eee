//! Simulated training jobs and their clock.
//!
//! A job's state is a pure function of the time elapsed since its submission (plus a failure
//! planned at submission and a cancellation), computed whenever it is read: no task runs per
//! job, so thousands of jobs cost only their memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::train::Training;
use crate::cxone::model::{Hyperparameters, JobState, JobStatus, LabelDef};

/// Where each stage ends, as a fraction of the job duration.
const QUEUED_END: f64 = 0.1;
const PROVISIONING_END: f64 = 0.2;
const TRAINING_END: f64 = 0.8;

/// How long an `Idempotency-Key` is remembered.
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a job was asked to do, kept for its status and its config artifact.
#[derive(Debug)]
pub(crate) struct JobSpec {
    pub(crate) skill_id: String,
    pub(crate) language: String,
    pub(crate) labels: Vec<LabelDef>,
    pub(crate) hyperparameters: Hyperparameters,
    pub(crate) validation_split: f64,
    pub(crate) utterances: usize,
}

/// A failure decided at submission: the job fails at `at` (a fraction of its duration, inside
/// TRAINING).
#[derive(Clone, Debug)]
pub(crate) struct PlannedFailure {
    pub(crate) at: f64,
    /// Picks one of the failure causes.
    pub(crate) cause: usize,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: String,
    /// Client id of the creator; no other client can see the job.
    pub(crate) owner: String,
    pub(crate) spec: JobSpec,
    pub(crate) training: Arc<Training>,
    created: Instant,
    created_at: Timestamp,
    duration: Duration,
    failure: Option<PlannedFailure>,
    /// Fraction of the duration at which the job was cancelled.
    cancelled_at: Option<f64>,
    /// Position in creation order (set by [`JobStore::insert`]).
    seq: u64,
    /// The `Idempotency-Key` it was created with, if any.
    idempotency_key: Option<String>,
}

/// The state of a job at one instant.
struct Phase {
    state: JobState,
    /// Fraction of the duration the job has run (frozen once terminal).
    fraction: f64,
}

impl Job {
    pub(crate) fn new(
        id: String,
        owner: String,
        spec: JobSpec,
        training: Arc<Training>,
        duration: Duration,
        failure: Option<PlannedFailure>,
        now: Instant,
    ) -> Self {
        Self {
            id,
            owner,
            spec,
            training,
            created: now,
            created_at: Timestamp::now(),
            duration,
            failure,
            cancelled_at: None,
            seq: 0,
            idempotency_key: None,
        }
    }

    fn elapsed_fraction(&self, now: Instant) -> f64 {
        let total = self.duration.as_secs_f64();
        if total <= 0.0 {
            return 1.0;
        }
        (now.saturating_duration_since(self.created).as_secs_f64() / total).min(1.0)
    }

    fn phase(&self, now: Instant) -> Phase {
        let f = self.elapsed_fraction(now);
        if let Some(at) = self.cancelled_at.filter(|&at| at <= f) {
            return Phase {
                state: JobState::Cancelled,
                fraction: at,
            };
        }
        if let Some(at) = self.failure.as_ref().map(|x| x.at).filter(|&at| at <= f) {
            return Phase {
                state: JobState::Failed,
                fraction: at,
            };
        }
        let state = if f >= 1.0 {
            JobState::Completed
        } else if f >= TRAINING_END {
            JobState::Evaluating
        } else if f >= PROVISIONING_END {
            JobState::Training
        } else if f >= QUEUED_END {
            JobState::Provisioning
        } else {
            JobState::Queued
        };
        Phase { state, fraction: f }
    }

    /// About how much memory the job takes: its model, evaluation and labels.
    pub(crate) fn approx_bytes(&self) -> usize {
        let labels: usize = self
            .spec
            .labels
            .iter()
            .map(|l| {
                l.id.len() + l.name.len() + l.description.as_ref().map_or(0, String::len) + 128
            })
            .sum();
        self.training.approx_bytes + labels + std::mem::size_of::<Job>()
    }

    pub(crate) fn state(&self, now: Instant) -> JobState {
        self.phase(now).state
    }

    /// Cancels the job if it is not terminal; returns the state it was in.
    pub(crate) fn cancel(&mut self, now: Instant) -> JobState {
        let phase = self.phase(now);
        if !phase.state.is_terminal() {
            self.cancelled_at = Some(phase.fraction);
        }
        phase.state
    }

    /// Epochs the training runs: all of them, or fewer when early stopping triggers.
    fn epochs_run(&self) -> u32 {
        let h = &self.spec.hyperparameters;
        let max = h.max_epochs.max(1);
        if h.early_stopping && h.patience < max {
            // Validation loss plateaus after about 70 % of the budget; stopping needs `patience`
            // epochs without improvement after the first one.
            let plateau = (f64::from(max) * 0.7).ceil() as u32;
            plateau.max(h.patience + 1).min(max)
        } else {
            max
        }
    }

    /// The epoch being trained at fraction `f` (inside TRAINING), 1-based.
    fn epoch_at(&self, f: f64) -> u32 {
        let run = self.epochs_run();
        let within = ((f - PROVISIONING_END) / (TRAINING_END - PROVISIONING_END)).clamp(0.0, 1.0);
        ((within * f64::from(run)).floor() as u32 + 1).min(run)
    }

    /// Compute units the job gets: more for bigger datasets.
    fn compute_units_allocated(&self) -> f64 {
        let blocks = (1.0 + self.spec.utterances as f64 / 500.0).ceil();
        (2.0 * blocks).min(64.0)
    }

    fn timestamp_at(&self, fraction: f64) -> Timestamp {
        let offset = Duration::from_secs_f64(self.duration.as_secs_f64() * fraction);
        self.created_at
            .checked_add(offset)
            .unwrap_or(self.created_at)
    }

    fn failure_reason(&self, failure: &PlannedFailure) -> String {
        let epoch = self.epoch_at(failure.at);
        let max = self.spec.hyperparameters.max_epochs;
        match failure.cause % 3 {
            0 => format!(
                "training diverged at epoch {epoch}/{max}: the loss became NaN; check the data for mislabelled utterances and resubmit"
            ),
            1 => format!(
                "the training worker was preempted at epoch {epoch}/{max} and the checkpoint could not be restored; resubmit the job"
            ),
            _ => format!(
                "out of memory on the training worker at epoch {epoch}/{max} ({} compute units); reduce the utterance count or maxEpochs",
                self.compute_units_allocated()
            ),
        }
    }

    /// What `GET …/jobs/{jobId}` returns at `now`.
    pub(crate) fn status(&self, now: Instant) -> JobStatus {
        let Phase { state, fraction } = self.phase(now);
        let max = self.spec.hyperparameters.max_epochs;
        let validation = self.training.validation_examples;
        let stage = match state {
            JobState::Queued => "queued: waiting for compute capacity".to_string(),
            JobState::Provisioning => format!(
                "provisioning {} compute units",
                self.compute_units_allocated()
            ),
            JobState::Training => format!("epoch {}/{max}", self.epoch_at(fraction)),
            JobState::Evaluating => {
                format!("evaluating on validation split ({validation} utterances)")
            }
            JobState::Completed if self.epochs_run() < max => format!(
                "completed: early stopping after epoch {}/{max}",
                self.epochs_run()
            ),
            JobState::Completed => format!("completed: {max}/{max} epochs"),
            JobState::Failed => format!("failed at epoch {}/{max}", self.epoch_at(fraction)),
            JobState::Cancelled => "cancelled".to_string(),
        };
        let started = fraction >= PROVISIONING_END;
        let allocated = if fraction >= QUEUED_END {
            self.compute_units_allocated()
        } else {
            0.0
        };
        let used_share = ((fraction - QUEUED_END) / (1.0 - QUEUED_END)).clamp(0.0, 1.0);
        let used = (allocated * 0.95 * used_share * 100.0).round() / 100.0;
        let progress = if state == JobState::Completed {
            100
        } else {
            ((fraction * 100.0).floor() as u8).min(99)
        };
        JobStatus {
            job_id: self.id.clone(),
            status: state,
            progress,
            stage,
            compute_units_allocated: allocated,
            compute_units_used: used,
            created_at: self.created_at,
            started_at: started.then(|| self.timestamp_at(PROVISIONING_END)),
            completed_at: state.is_terminal().then(|| self.timestamp_at(fraction)),
            failure_reason: match (&self.failure, state) {
                (Some(failure), JobState::Failed) => Some(self.failure_reason(failure)),
                _ => None,
            },
        }
    }

    /// The configuration artifact.
    pub(crate) fn config_json(&self) -> Value {
        let spec = &self.spec;
        json!({
            "format": "cxone-simulator/skill-config/v1",
            "jobId": self.id,
            "skillId": spec.skill_id,
            "language": spec.language,
            "labels": spec.labels,
            "hyperparameters": spec.hyperparameters,
            "epochsRun": self.epochs_run(),
            "validationSplit": spec.validation_split,
            "trainingExamples": self.training.training_examples,
            "validationExamples": self.training.validation_examples,
            "createdAt": self.created_at,
        })
    }
}

/// What an `Idempotency-Key` lookup found.
#[derive(Debug, PartialEq)]
pub(crate) enum Idempotency {
    /// The key is new (or expired).
    New,
    /// The key was used for the same payload: answer with this job.
    Replay { job_id: String, state: JobState },
    /// The key was used for a different payload.
    Conflict { job_id: String },
}

#[derive(Debug)]
struct IdempotencyRecord {
    fingerprint: [u8; 32],
    job_id: String,
    at: Instant,
}

/// All jobs and remembered idempotency keys: at most `max` jobs, whose models and evaluations
/// take at most about `max_bytes`.
#[derive(Debug)]
pub(crate) struct JobStore {
    jobs: HashMap<String, Job>,
    /// Creation order → job id, oldest first.
    order: BTreeMap<u64, String>,
    /// (client id, key) → record.
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    created: u64,
    max: usize,
    max_bytes: usize,
    /// Sum of [`Job::approx_bytes`] of the kept jobs.
    bytes: usize,
    evicted: u64,
}

/// Why a new job cannot be kept.
#[derive(Debug, PartialEq)]
pub(crate) enum NoRoom {
    /// `max` jobs are kept and every one is still running.
    Jobs { max: usize },
    /// The running jobs already take the memory budget.
    Memory { budget: usize },
    /// The job alone would take more than the whole budget.
    TooLarge { needed: usize, budget: usize },
}

impl JobStore {
    pub(crate) fn new(max: usize, max_bytes: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            order: BTreeMap::new(),
            idempotency: HashMap::new(),
            created: 0,
            max: max.max(1),
            max_bytes,
            bytes: 0,
            evicted: 0,
        }
    }

    /// About how much memory the kept jobs' models and evaluations take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of jobs created so far (the counter new job ids are derived from).
    pub(crate) fn created(&self) -> u64 {
        self.created
    }

    /// Number of jobs kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Finished jobs forgotten so far to make room.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Number of remembered idempotency keys.
    pub(crate) fn idempotency_keys(&self) -> usize {
        self.idempotency.len()
    }

    pub(crate) fn idempotency(
        &self,
        client: &str,
        key: &str,
        fingerprint: &[u8; 32],
        now: Instant,
    ) -> Idempotency {
        let record = self
            .idempotency
            .get(&(client.to_string(), key.to_string()))
            .filter(|r| now.saturating_duration_since(r.at) < IDEMPOTENCY_TTL);
        match record {
            None => Idempotency::New,
            Some(r) if r.fingerprint != *fingerprint => Idempotency::Conflict {
                job_id: r.job_id.clone(),
            },
            Some(r) => Idempotency::Replay {
                job_id: r.job_id.clone(),
                state: self
                    .jobs
                    .get(&r.job_id)
                    .map_or(JobState::Queued, |job| job.state(now)),
            },
        }
    }

    /// Makes room for one more job of about `needed` bytes by forgetting the oldest finished
    /// ones (and their idempotency keys); fails when the running ones leave no room.
    pub(crate) fn make_room(&mut self, now: Instant, needed: usize) -> Result<(), NoRoom> {
        if needed > self.max_bytes {
            return Err(NoRoom::TooLarge {
                needed,
                budget: self.max_bytes,
            });
        }
        loop {
            let too_many = self.jobs.len() >= self.max;
            let too_big = self.bytes + needed > self.max_bytes;
            if !too_many && !too_big {
                return Ok(());
            }
            // Jobs run for the same duration, so the oldest are normally the finished ones and
            // the search stops near the front.
            let oldest_finished = self
                .order
                .iter()
                .find(|(_, id)| {
                    self.jobs
                        .get(*id)
                        .is_none_or(|j| j.state(now).is_terminal())
                })
                .map(|(seq, _)| *seq);
            let Some(seq) = oldest_finished else {
                return Err(if too_many {
                    NoRoom::Jobs { max: self.max }
                } else {
                    NoRoom::Memory {
                        budget: self.max_bytes,
                    }
                });
            };
            self.evict(seq);
        }
    }

    fn evict(&mut self, seq: u64) {
        let Some(id) = self.order.remove(&seq) else {
            return;
        };
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(job.approx_bytes());
        self.evicted += 1;
        if let Some(key) = job.idempotency_key {
            let slot = (job.owner, key);
            // The key may have been reused (after expiring) for a newer job: keep that record.
            if self.idempotency.get(&slot).is_some_and(|r| r.job_id == id) {
                self.idempotency.remove(&slot);
            }
        }
    }

    /// Adds a job (remembering its idempotency key, if any). Call [`Self::make_room`] first: a
    /// full store forgets its oldest job, running or not.
    pub(crate) fn insert(
        &mut self,
        mut job: Job,
        idempotency: Option<(String, [u8; 32])>,
        now: Instant,
    ) {
        if self.jobs.len() >= self.max
            && let Some((&seq, _)) = self.order.iter().next()
        {
            self.evict(seq);
        }
        if let Some((key, fingerprint)) = idempotency {
            if self.idempotency.len() >= 1024 && self.created.is_multiple_of(1024) {
                self.idempotency
                    .retain(|_, r| now.saturating_duration_since(r.at) < IDEMPOTENCY_TTL);
            }
            self.idempotency.insert(
                (job.owner.clone(), key.clone()),
                IdempotencyRecord {
                    fingerprint,
                    job_id: job.id.clone(),
                    at: now,
                },
            );
            job.idempotency_key = Some(key);
        }
        job.seq = self.created;
        self.created += 1;
        self.bytes += job.approx_bytes();
        self.order.insert(job.seq, job.id.clone());
        self.jobs.insert(job.id.clone(), job);
    }

    /// The job `id` if `client` owns it.
    pub(crate) fn get(&self, client: &str, id: &str) -> Option<&Job> {
        self.jobs.get(id).filter(|job| job.owner == client)
    }

    pub(crate) fn get_mut(&mut self, client: &str, id: &str) -> Option<&mut Job> {
        self.jobs.get_mut(id).filter(|job| job.owner == client)
    }

    /// A job by id alone (for signed artifact URLs, which carry their own authorisation).
    pub(crate) fn by_id(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Jobs by current state; every state is listed.
    /// When each job was created and, if it completes, when it does (for benchmarks).
    pub(crate) fn timelines(&self, now: Instant) -> Vec<super::JobTimeline> {
        self.jobs
            .values()
            .map(|job| {
                let state = job.state(now);
                let completes = job.failure.is_none() && job.cancelled_at.is_none();
                super::JobTimeline {
                    job_id: job.id.clone(),
                    state,
                    created_at: job.created_at,
                    completes_at: completes
                        .then(|| job.created_at.checked_add(job.duration).ok())
                        .flatten(),
                }
            })
            .collect()
    }

    pub(crate) fn state_counts(&self, now: Instant) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = JobState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for job in self.jobs.values() {
            *counts
                .entry(job.state(now).as_str().to_string())
                .or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxone::model::Utterance;
    use crate::simulator::train::train;

    fn job(duration: Duration, failure: Option<PlannedFailure>, now: Instant) -> Job {
        named("job-1", duration, failure, now)
    }

    fn named(id: &str, duration: Duration, failure: Option<PlannedFailure>, now: Instant) -> Job {
        let labels = vec![
            LabelDef {
                id: "a".into(),
                name: "A".into(),
                description: None,
            },
            LabelDef {
                id: "b".into(),
                name: "B".into(),
                description: None,
            },
        ];
        let utterances: Vec<Utterance> = ["x one", "x two", "y one", "y two"]
            .iter()
            .zip(["a", "a", "b", "b"])
            .map(|(t, l)| Utterance {
                text: (*t).into(),
                label: l.into(),
                language: None,
            })
            .collect();
        let training = Arc::new(train(&labels, &utterances, 0.5, 1.0));
        let spec = JobSpec {
            skill_id: "s".into(),
            language: "en".into(),
            labels,
            hyperparameters: Hyperparameters::default(),
            validation_split: 0.5,
            utterances: 4,
        };
        Job::new(
            id.into(),
            "c".into(),
            spec,
            training,
            duration,
            failure,
            now,
        )
    }

    #[test]
    fn runs_through_the_stages() {
        let t0 = Instant::now();
        let d = Duration::from_secs(100);
        let j = job(d, None, t0);
        let at = |secs: u64| j.status(t0 + Duration::from_secs(secs));
        let s = at(0);
        assert_eq!(
            (s.status, s.progress, s.compute_units_allocated),
            (JobState::Queued, 0, 0.0)
        );
        assert!(s.started_at.is_none() && s.completed_at.is_none());
        let s = at(15);
        assert_eq!(s.status, JobState::Provisioning);
        assert!(s.compute_units_allocated > 0.0);
        let s = at(50);
        assert_eq!((s.status, s.progress), (JobState::Training, 50));
        assert!(s.stage.starts_with("epoch "), "{}", s.stage);
        assert!(s.started_at.is_some());
        assert_eq!(at(85).status, JobState::Evaluating);
        let s = at(100);
        assert_eq!((s.status, s.progress), (JobState::Completed, 100));
        assert!(s.completed_at.is_some());
        assert!(s.compute_units_used > 0.9 * s.compute_units_allocated);
        assert!(s.compute_units_used <= s.compute_units_allocated);
        // Progress never decreases.
        let mut last = 0;
        for secs in 0..=110 {
            let p = at(secs).progress;
            assert!(p >= last);
            last = p;
        }
    }

    #[test]
    fn planned_failures_and_cancellations_freeze_the_job() {
        let t0 = Instant::now();
        let d = Duration::from_secs(100);
        let failing = job(d, Some(PlannedFailure { at: 0.5, cause: 0 }), t0);
        assert_eq!(
            failing.state(t0 + Duration::from_secs(49)),
            JobState::Training
        );
        let s = failing.status(t0 + Duration::from_secs(90));
        assert_eq!((s.status, s.progress), (JobState::Failed, 50));
        assert!(s.failure_reason.unwrap().contains("diverged"));

        let mut cancelled = job(d, None, t0);
        assert_eq!(
            cancelled.cancel(t0 + Duration::from_secs(30)),
            JobState::Training
        );
        let s = cancelled.status(t0 + Duration::from_secs(200));
        assert_eq!((s.status, s.progress), (JobState::Cancelled, 30));
        assert_eq!(
            cancelled.cancel(t0 + Duration::from_secs(201)),
            JobState::Cancelled
        );
    }

    #[test]
    fn zero_duration_jobs_complete_at_once() {
        let t0 = Instant::now();
        assert_eq!(job(Duration::ZERO, None, t0).state(t0), JobState::Completed);
    }

    #[test]
    fn the_store_forgets_the_oldest_finished_jobs_and_their_keys() {
        let t0 = Instant::now();
        let short = Duration::from_secs(10);
        let long = Duration::from_secs(1000);
        let mut store = JobStore::new(3, usize::MAX);
        let fp = [7u8; 32];
        // job-a finishes first although job-b is older.
        store.insert(named("job-b", long, None, t0), Some(("kb".into(), fp)), t0);
        store.insert(named("job-a", short, None, t0), Some(("ka".into(), fp)), t0);
        store.insert(named("job-c", long, None, t0), None, t0);
        assert_eq!((store.len(), store.idempotency_keys()), (3, 2));

        // Nothing finished yet: no room, and nothing is forgotten.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(store.make_room(t1, 0), Err(NoRoom::Jobs { max: 3 }));
        assert_eq!(store.len(), 3);

        // job-a finished: it goes (with its key), the older running job-b stays.
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(store.make_room(t2, 0), Ok(()));
        store.insert(named("job-d", long, None, t2), Some(("kd".into(), fp)), t2);
        assert!(store.by_id("job-a").is_none());
        assert!(store.by_id("job-b").is_some());
        assert_eq!(store.idempotency("c", "ka", &fp, t2), Idempotency::New);
        assert!(matches!(
            store.idempotency("c", "kb", &fp, t2),
            Idempotency::Replay { .. }
        ));
        assert_eq!(
            (store.len(), store.idempotency_keys(), store.evicted()),
            (3, 2, 1)
        );

        // A cancelled job is finished too; the oldest finished one goes first.
        let t3 = t2 + Duration::from_secs(1);
        store.get_mut("c", "job-c").unwrap().cancel(t3);
        store.get_mut("c", "job-b").unwrap().cancel(t3);
        assert_eq!(store.make_room(t3, 0), Ok(()));
        assert!(store.by_id("job-b").is_none());
        assert!(store.by_id("job-c").is_some());
        assert_eq!(store.idempotency("c", "kb", &fp, t3), Idempotency::New);
        assert_eq!(store.len(), 2);
        assert_eq!(store.state_counts(t3).values().sum::<u64>(), 2);
    }

    #[test]
    fn the_store_keeps_its_memory_budget() {
        let t0 = Instant::now();
        let short = Duration::from_secs(10);
        let size = named("x", short, None, t0).approx_bytes();
        assert!(size > 1000, "{size}");
        // Room for two jobs by memory, ten by count.
        let mut store = JobStore::new(10, 2 * size + size / 2);
        assert_eq!(
            store.make_room(t0, 3 * size),
            Err(NoRoom::TooLarge {
                needed: 3 * size,
                budget: 2 * size + size / 2
            })
        );
        for id in ["job-a", "job-b"] {
            assert_eq!(store.make_room(t0, size), Ok(()));
            store.insert(named(id, short, None, t0), None, t0);
        }
        assert_eq!(store.bytes(), 2 * size);
        assert_eq!(
            store.make_room(t0, size),
            Err(NoRoom::Memory {
                budget: 2 * size + size / 2
            })
        );
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(store.make_room(t1, size), Ok(()));
        assert!(store.by_id("job-a").is_none());
        assert_eq!(store.bytes(), size);
    }
}
