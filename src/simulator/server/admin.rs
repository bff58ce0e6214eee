//! The `/_sim` admin endpoints (stats, fault settings, token revocation; the gate checks admin
//! access first), `/healthz`, and the answers to unknown paths and methods.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::request::{json_response, read_body};
use super::{SMALL_BODY_LIMIT, Simulator};
use crate::simulator::faults::Faults;
use crate::training::validation::truncate;

pub(super) async fn stats(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, sim.stats())
}

pub(super) async fn get_faults(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, sim.faults())
}

pub(super) async fn put_faults(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let limit = SMALL_BODY_LIMIT.min(sim.config.max_request_bytes);
    let bytes = read_body(&parts.headers, body, limit).await?;
    let faults: Faults = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid_request(format!("invalid fault settings: {e}")))?;
    faults.validate().map_err(ApiError::invalid_request)?;
    tracing::info!(?faults, "fault settings changed");
    sim.set_faults(faults.clone());
    Ok(json_response(StatusCode::OK, faults))
}

pub(super) async fn revoke_tokens(State(sim): State<Arc<Simulator>>) -> Response {
    let revoked = sim.revoke_tokens();
    tracing::info!(revoked, "access tokens revoked");
    json_response(StatusCode::OK, json!({ "revoked": revoked }))
}

pub(super) async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {method} {}", truncate(uri.path(), 200)),
    )
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", truncate(uri.path(), 200)),
    )
}
