//! The endpoints of one job: `GET …/jobs/{jobId}` (status), `…/evaluation`,
//! `…/artifacts/export` (signed URLs) and `POST …/cancel`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::error::{ApiError, ApiResult};
use super::request::{job_id, json_response};
use super::{CONFIG_FILE, MODEL_WEIGHTS_FILE, Simulator, lock};
use crate::cxone::Call;
use crate::cxone::model::{ArtifactUrls, ExportResponse, JobState};
use crate::simulator::jobs::Job;

pub(super) async fn job_status(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let grant = sim.authorize(&headers, Call::Status)?;
    let id = job_id(path)?;
    let jobs = lock(&sim.jobs);
    let job = jobs
        .get(&grant.client_id, &id)
        .ok_or_else(|| ApiError::job_not_found(&id))?;
    Ok(json_response(StatusCode::OK, job.status(Instant::now())))
}

/// 409 unless the job is COMPLETED.
fn require_completed(job: &Job, now: Instant, what: &str) -> Result<(), ApiError> {
    let status = job.status(now);
    let message = match status.status {
        JobState::Completed => return Ok(()),
        JobState::Failed => format!(
            "job {} FAILED ({}); a failed job has no {what}",
            job.id,
            status
                .failure_reason
                .as_deref()
                .unwrap_or("no reason given")
        ),
        JobState::Cancelled => format!(
            "job {} was CANCELLED; a cancelled job has no {what}",
            job.id
        ),
        state => format!(
            "job {} is {state} ({}% done); its {what} is available once it is COMPLETED",
            job.id, status.progress
        ),
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "job_not_completed",
        message,
    ))
}

pub(super) async fn evaluation(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let grant = sim.authorize(&headers, Call::Evaluation)?;
    let id = job_id(path)?;
    let training = {
        let jobs = lock(&sim.jobs);
        let job = jobs
            .get(&grant.client_id, &id)
            .ok_or_else(|| ApiError::job_not_found(&id))?;
        require_completed(job, Instant::now(), "evaluation")?;
        job.training.clone()
    };
    Ok(json_response(StatusCode::OK, &training.evaluation))
}

pub(super) async fn export(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let grant = sim.authorize(&headers, Call::Export)?;
    let id = job_id(path)?;
    {
        let jobs = lock(&sim.jobs);
        let job = jobs
            .get(&grant.client_id, &id)
            .ok_or_else(|| ApiError::job_not_found(&id))?;
        require_completed(job, Instant::now(), "artifacts")?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let expires = (now + sim.config.artifact_ttl).as_secs();
    let base = sim.public_base(&headers);
    let url = |file: &str| {
        let path = format!("/_sim/artifacts/{id}/{file}");
        let signature = sim.keys.sign_url("GET", &path, expires);
        format!("{base}{path}?expires={expires}&signature={signature}")
    };
    let expires_at = i64::try_from(expires)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    Ok(json_response(
        StatusCode::OK,
        ExportResponse {
            artifacts: ArtifactUrls {
                model_weights_url: url(MODEL_WEIGHTS_FILE),
                config_url: url(CONFIG_FILE),
            },
            expires_at,
        },
    ))
}

pub(super) async fn cancel(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let grant = sim.authorize(&headers, Call::Cancel)?;
    let id = job_id(path)?;
    let now = Instant::now();
    let mut jobs = lock(&sim.jobs);
    let job = jobs
        .get_mut(&grant.client_id, &id)
        .ok_or_else(|| ApiError::job_not_found(&id))?;
    let before = job.cancel(now);
    if before.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_terminal",
            format!(
                "job {} is already {before}; only QUEUED, PROVISIONING, TRAINING or EVALUATING jobs can be cancelled",
                job.id
            ),
        ));
    }
    tracing::info!(job_id = %job.id, was = %before, "training job cancelled");
    Ok(json_response(StatusCode::OK, job.status(now)))
}
