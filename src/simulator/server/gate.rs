//! The middleware in front of every route: it classifies the request ([`Endpoint`]), injects
//! the configured faults into API calls (5xx, slow and malformed responses, with [`Dice`] rolled
//! up front), counts every response and logs it. Imports the simulator state and its faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::{RESPONSE_REWRITE_LIMIT, Simulator, lock};
use crate::cxone::Call;
use crate::cxone::model::paths;
use crate::simulator::rng::{SplitMix64, hits};
use crate::training::validation::truncate;

/// What a request is, for the stats: one of the API calls, an artifact download, or a path that
/// is none of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    Api(Call),
    Artifact,
    Other,
}

impl Endpoint {
    /// The endpoint a path belongs to; `None` for the admin endpoints, which are not counted.
    fn classify(path: &str) -> Option<Self> {
        if path == paths::TOKEN {
            return Some(Self::Api(Call::Token));
        }
        if path.starts_with("/_sim/artifacts/") {
            return Some(Self::Artifact);
        }
        if path.starts_with("/_sim/") || path == "/healthz" {
            return None;
        }
        let Some(rest) = path.strip_prefix(paths::JOBS) else {
            return Some(Self::Other);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        Some(match segments.as_slice() {
            [""] => Self::Api(Call::Submit),
            ["", id] if !id.is_empty() => Self::Api(Call::Status),
            ["", id, "evaluation"] if !id.is_empty() => Self::Api(Call::Evaluation),
            ["", id, "artifacts", "export"] if !id.is_empty() => Self::Api(Call::Export),
            ["", id, "cancel"] if !id.is_empty() => Self::Api(Call::Cancel),
            _ => Self::Other,
        })
    }

    /// The name in the stats: the call's name, `artifact` or `other`.
    fn name(self) -> &'static str {
        match self {
            Self::Api(call) => call.as_str(),
            Self::Artifact => "artifact",
            Self::Other => "other",
        }
    }
}

/// The random draws of one API request, made up front in a fixed number so that the same seed
/// and request sequence give the same faults whatever the fault settings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dice {
    fault: f64,
    fault_kind: f64,
    slow: f64,
    malformed: f64,
    pub(super) post_commit: f64,
}

impl Dice {
    fn roll(rng: &mut SplitMix64) -> Self {
        Self {
            fault: rng.next_f64(),
            fault_kind: rng.next_f64(),
            slow: rng.next_f64(),
            malformed: rng.next_f64(),
            post_commit: rng.next_f64(),
        }
    }
}

/// Injects faults, counts every response, and logs requests (path only: queries carry
/// signatures).
pub(super) async fn gate(
    State(sim): State<Arc<Simulator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(endpoint) = Endpoint::classify(&path) else {
        if path.starts_with("/_sim/")
            && let Err(refused) = sim.authorize_admin(req.headers())
        {
            tracing::debug!(%method, path = %truncate(&path, 200), "admin request refused");
            return refused.into_response();
        }
        return next.run(req).await;
    };
    // API calls are subject to fault injection; artifact downloads and unknown paths are not.
    let response = if matches!(endpoint, Endpoint::Api(_)) {
        let dice = Dice::roll(&mut lock(&sim.dice));
        let faults = sim.faults();
        if hits(dice.fault, faults.fault_rate) {
            let (status, kind) = if dice.fault_kind < 0.5 {
                (StatusCode::INTERNAL_SERVER_ERROR, "error500")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "error503")
            };
            sim.record_fault(kind);
            ApiError::injected(status).into_response()
        } else {
            if hits(dice.slow, faults.slow_rate) {
                sim.record_fault("slow");
                tokio::time::sleep(Duration::from_millis(faults.slow_delay_ms)).await;
            }
            req.extensions_mut().insert(dice);
            let response = next.run(req).await;
            if response.status().is_success() && hits(dice.malformed, faults.malformed_rate) {
                sim.record_fault("malformed");
                malformed(response).await
            } else {
                response
            }
        }
    } else {
        next.run(req).await
    };
    let status = response.status();
    lock(&sim.stats).record_call(endpoint.name(), status.as_u16());
    tracing::debug!(
        %method,
        path = %truncate(&path, 200),
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "simulator request"
    );
    response
}

/// The same response with a JSON body that lost every other field and had the types of the
/// rest changed.
async fn malformed(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let value = match axum::body::to_bytes(body, RESPONSE_REWRITE_LIMIT).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let mangled = mangle(value);
    let mut response = (parts.status, Json(mangled)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_LENGTH && name != CONTENT_TYPE {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

fn mangle(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, (k, v))| (k, wrong_type(v)))
                .collect(),
        ),
        other => wrong_type(other),
    }
}

fn wrong_type(value: Value) -> Value {
    match value {
        Value::String(s) => json!(s.len()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => json!(false),
        Value::Array(_) => json!({}),
        Value::Object(_) => json!([]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_endpoints() {
        let id = "/api/v2/ai/skills/training/jobs/job-1";
        let api = |call| Some(Endpoint::Api(call));
        assert_eq!(Endpoint::classify("/oauth/token"), api(Call::Token));
        assert_eq!(Endpoint::classify(paths::JOBS), api(Call::Submit));
        assert_eq!(Endpoint::classify(id), api(Call::Status));
        assert_eq!(
            Endpoint::classify(&format!("{id}/evaluation")),
            api(Call::Evaluation)
        );
        assert_eq!(
            Endpoint::classify(&format!("{id}/artifacts/export")),
            api(Call::Export)
        );
        assert_eq!(
            Endpoint::classify(&format!("{id}/cancel")),
            api(Call::Cancel)
        );
        assert_eq!(
            Endpoint::classify("/_sim/artifacts/job-1/config.json"),
            Some(Endpoint::Artifact)
        );
        assert_eq!(Endpoint::classify("/_sim/stats"), None);
        assert_eq!(Endpoint::classify("/healthz"), None);
        assert_eq!(Endpoint::classify("/nope"), Some(Endpoint::Other));
        assert_eq!(
            Endpoint::classify(&format!("{id}/x")),
            Some(Endpoint::Other)
        );
        assert_eq!(
            Endpoint::classify("/api/v2/ai/skills/training/jobsX"),
            Some(Endpoint::Other)
        );
    }

    #[test]
    fn malformed_bodies_lose_fields_and_change_types() {
        let value = json!({"a": "x", "b": 1, "c": true, "d": [1]});
        assert_eq!(mangle(value), json!({"b": "1", "d": {}}));
        assert_eq!(mangle(json!([1])), json!({}));
    }
}
