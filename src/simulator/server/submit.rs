//! `POST /api/v2/ai/skills/training/jobs`: a submission in phases: authorize, read the
//! `Idempotency-Key`, read the body within the submission budget, answer a known key, validate,
//! train (off the async workers), store the job, and maybe inject a fault after the commit.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::sync::SemaphorePermit;

use super::error::{ApiError, ApiResult};
use super::gate::Dice;
use super::request::{budget_kib, declared_length, json_response, read_body};
use super::{BODY_READ_TIMEOUT, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_LEN, Simulator, lock};
use crate::cxone::Call;
use crate::cxone::model::{JobState, SubmitResponse, TrainingJobRequest};
use crate::simulator::jobs::{Idempotency, Job, JobSpec, JobStore, NoRoom};
use crate::simulator::rng::hits;
use crate::simulator::train::{Training, train};
use crate::training::validate_request;

pub(super) async fn submit(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let grant = sim.authorize(&parts.headers, Call::Submit)?;
    let key = idempotency_key(&parts.headers)?;
    // Held until the response: reading, parsing, validating and training all scale with the body.
    let (request, _budget) = read_submission(&sim, &parts.headers, body).await?;
    // The payload's identity: its canonical serialisation, so formatting does not matter.
    let fingerprint: [u8; 32] =
        Sha256::digest(serde_json::to_vec(&request).unwrap_or_default()).into();

    if let Some(key) = &key {
        let found =
            lock(&sim.jobs).idempotency(&grant.client_id, key, &fingerprint, Instant::now());
        if let Some(response) = idempotent_answer(&sim, found)? {
            return Ok(response);
        }
    }

    let language = validate(&sim, &request)?;
    let (spec, training) = train_off_workers(&sim, request, language).await?;
    let now = Instant::now();
    let created = {
        let mut jobs = lock(&sim.jobs);
        // Another request with the same key may have created the job while this one trained.
        if let Some(key) = &key {
            let found = jobs.idempotency(&grant.client_id, key, &fingerprint, now);
            if let Some(response) = idempotent_answer(&sim, found)? {
                return Ok(response);
            }
        }
        let new_job = NewJob {
            client_id: &grant.client_id,
            spec,
            training,
            key: key.map(|k| (k, fingerprint)),
        };
        store_job(&sim, &mut jobs, new_job, now)?
    };
    lock(&sim.stats).jobs_created += 1;
    tracing::info!(job_id = %created, client_id = %grant.client_id, "training job created");

    let post_commit = parts
        .extensions
        .get::<Dice>()
        .is_some_and(|dice| hits(dice.post_commit, lock(&sim.faults).post_commit_fault_rate));
    if post_commit {
        sim.record_fault("postCommit503");
        return Err(ApiError::injected(StatusCode::SERVICE_UNAVAILABLE));
    }
    Ok(json_response(
        StatusCode::CREATED,
        SubmitResponse {
            job_id: created,
            status: JobState::Queued,
        },
    ))
}

/// The `Idempotency-Key` header, when sent: 1-255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN);
    let key = key.ok_or_else(|| {
        ApiError::invalid_request(format!(
            "the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))
    })?;
    Ok(Some(key.to_string()))
}

/// Reads and parses the body within the submission budget; the permit is returned so the caller
/// holds it until it answers.
async fn read_submission<'s>(
    sim: &'s Simulator,
    headers: &HeaderMap,
    body: Body,
) -> Result<(TrainingJobRequest, SemaphorePermit<'s>), ApiError> {
    let limit = sim.config.max_request_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let budget = sim
        .submission_budget
        .acquire_many(budget_kib(declared.map_or(limit, |n| n as usize)))
        .await
        .map_err(|_| ApiError::injected(StatusCode::SERVICE_UNAVAILABLE))?;
    // A body that trickles in must not hold the budget for long.
    let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, read_body(headers, body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })??;
    let request: TrainingJobRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid_request(format!("the request body is not a valid training job: {e}"))
    })?;
    Ok((request, budget))
}

/// The submission passes the simulator's validation rules (a 400 with every violation
/// otherwise); returns the training set's language.
fn validate(sim: &Simulator, request: &TrainingJobRequest) -> Result<String, ApiError> {
    let report = validate_request(request, &sim.rules);
    if !report.is_valid() {
        let count = report.violations.len();
        let first = report
            .violations
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let message = if count == 1 {
            format!("the training data failed validation: {first}")
        } else {
            format!("the training data failed validation with {count} errors; the first: {first}")
        };
        let mut error = ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message);
        error.body.details = report.violations.iter().map(ToString::to_string).collect();
        return Err(error);
    }
    Ok(report
        .language
        .unwrap_or_else(|| request.training_data.language.clone()))
}

/// Trains the model (a large payload takes a while, so off the async workers) and describes
/// the job it belongs to.
async fn train_off_workers(
    sim: &Simulator,
    request: TrainingJobRequest,
    language: String,
) -> Result<(JobSpec, Training), ApiError> {
    let training_seconds = sim.config.job_duration.as_secs_f64() * 0.6;
    let (request, training) = tokio::task::spawn_blocking(move || {
        let training = train(
            &request.labels,
            &request.training_data.utterances,
            request.training_data.validation_split,
            training_seconds,
        );
        (request, training)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("training could not run: {e}"),
        )
    })?;
    let spec = JobSpec {
        skill_id: request.skill_id,
        language,
        utterances: request.training_data.utterances.len(),
        labels: request.labels,
        hyperparameters: request.hyperparameters,
        validation_split: request.training_data.validation_split,
    };
    Ok((spec, training))
}

/// A trained submission, ready to be stored.
struct NewJob<'a> {
    client_id: &'a str,
    spec: JobSpec,
    training: Training,
    /// The `Idempotency-Key` and the payload's fingerprint.
    key: Option<(String, [u8; 32])>,
}

/// Creates the job in the store (making room first) under a new id, with its idempotency key.
fn store_job(
    sim: &Simulator,
    jobs: &mut JobStore,
    new_job: NewJob<'_>,
    now: Instant,
) -> Result<String, ApiError> {
    let NewJob {
        client_id,
        spec,
        training,
        key,
    } = new_job;
    let id = sim.keys.job_id(jobs.created());
    let job = Job::new(
        id.clone(),
        client_id.to_string(),
        spec,
        Arc::new(training),
        sim.config.job_duration,
        sim.plan_failure(),
        now,
    );
    jobs.make_room(now, job.approx_bytes())
        .map_err(|no_room| no_room_error(&no_room))?;
    jobs.insert(job, key, now);
    Ok(id)
}

/// The answer to a submission the job store has no room for.
fn no_room_error(no_room: &NoRoom) -> ApiError {
    match *no_room {
        NoRoom::Jobs { max } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "capacity_exceeded",
            format!(
                "the simulator keeps at most {max} jobs (--max-jobs) and every one is still running; retry after a delay"
            ),
        ),
        NoRoom::Memory { budget } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "capacity_exceeded",
            format!(
                "the running jobs take the simulator's job memory of {budget} bytes (--max-job-memory); retry after a delay"
            ),
        ),
        NoRoom::TooLarge { needed, budget } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the model trained from this payload takes about {needed} bytes, more than the simulator's job memory of {budget} bytes (--max-job-memory); send fewer or shorter utterances"
            ),
        ),
    }
}

/// The answer to a submission whose `Idempotency-Key` is known; `None` when it is new.
fn idempotent_answer(sim: &Simulator, found: Idempotency) -> Result<Option<Response>, ApiError> {
    match found {
        Idempotency::New => Ok(None),
        Idempotency::Replay { job_id, state } => {
            lock(&sim.stats).idempotent_replays += 1;
            Ok(Some(json_response(
                StatusCode::OK,
                SubmitResponse {
                    job_id,
                    status: state,
                },
            )))
        }
        Idempotency::Conflict { job_id } => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                format!(
                    "this Idempotency-Key was already used for job {job_id} with a different payload; use a new key for a new job"
                ),
            );
            error.body.job_id = Some(job_id);
            Err(error)
        }
    }
}
