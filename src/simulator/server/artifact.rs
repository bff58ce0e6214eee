//! `GET /_sim/artifacts/{jobId}/{file}?expires=…&signature=…`: the signed, expiring artifact
//! downloads the export endpoint hands out (a job's config and weights, or synthetic weights of
//! a configured size streamed piece by piece).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::request::json_response;
use super::{CONFIG_FILE, MAX_ECHO_CHARS, MODEL_WEIGHTS_FILE, Simulator, lock};
use crate::simulator::rng::SplitMix64;
use crate::training::validation::truncate;

#[derive(Deserialize)]
pub(super) struct SignedQuery {
    expires: Option<String>,
    signature: Option<String>,
}

pub(super) async fn artifact(
    State(sim): State<Arc<Simulator>>,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> ApiResult {
    let (id, file) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::invalid_request(format!("invalid artifact path: {e}")))?;
    let Ok(Query(SignedQuery {
        expires: Some(expires),
        signature: Some(signature),
    })) = query
    else {
        return Err(ApiError::forbidden_artifact(
            "the artifact URL is not signed: it needs the expires and signature parameters from the export endpoint",
        ));
    };
    let expires: u64 = expires.parse().map_err(|_| {
        ApiError::forbidden_artifact("the artifact URL's expires parameter is not a Unix time")
    })?;
    if !sim.keys.verify_url("GET", uri.path(), expires, &signature) {
        return Err(ApiError::forbidden_artifact(
            "the artifact URL's signature does not match; use the URL exactly as the export endpoint returned it",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if now >= expires as f64 || sim.take_artifact_expiry() {
        let expired_at = i64::try_from(expires)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map_or_else(|| expires.to_string(), |t| t.to_string());
        return Err(ApiError::forbidden_artifact(format!(
            "the artifact URL expired at {expired_at}; call the export endpoint again for a fresh one"
        ))
        .with_error("url_expired"));
    }
    // The signature covers the path, so the job and file are the ones the export named.
    let (training, config) = {
        let jobs = lock(&sim.jobs);
        let job = jobs
            .by_id(&id)
            .ok_or_else(|| ApiError::job_not_found(&id))?;
        (
            job.training.clone(),
            (file == CONFIG_FILE).then(|| job.config_json()),
        )
    };
    if file == MODEL_WEIGHTS_FILE
        && let Some(size) = sim.config.artifact_weights_bytes
    {
        return Ok(synthetic_weights(&id, size));
    }
    let body = match (file.as_str(), config) {
        (CONFIG_FILE, Some(config)) => config,
        (MODEL_WEIGHTS_FILE, _) => training.model.to_json(),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no artifact {:?}", truncate(&file, MAX_ECHO_CHARS)),
            ));
        }
    };
    Ok(json_response(StatusCode::OK, body))
}

/// Piece size of a synthetic weights file: what is in memory at a time while it is served.
const SYNTHETIC_PIECE_BYTES: usize = 64 * 1024;

/// `--artifact-weights-bytes`: exactly `size` bytes of a SplitMix64 stream seeded from the job
/// id, produced piece by piece while the response is sent (a 256 MiB file never takes more than
/// one piece of memory), with its Content-Length.
fn synthetic_weights(job_id: &str, size: u64) -> Response {
    let digest = Sha256::digest(job_id.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let rng = SplitMix64::new(u64::from_le_bytes(seed));
    let pieces = futures::stream::unfold((rng, size), |(mut rng, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let len = remaining.min(SYNTHETIC_PIECE_BYTES as u64) as usize;
        let mut piece = Vec::with_capacity(len + 8);
        while piece.len() < len {
            piece.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        piece.truncate(len);
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(piece)),
            (rng, remaining - len as u64),
        ))
    });
    let mut response = Response::new(Body::from_stream(pieces));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    response
}
