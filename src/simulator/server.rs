//! The HTTP side of the simulator: routes, authentication, rate limiting, fault injection and
//! the handlers of every endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::{
    Grant, TokenParams, TokenStore, basic_credentials, form_decode, parse_scopes, secrets_equal,
};
use super::config::{AdminAccess, ClientCredentials, SimulatorConfig};
use super::faults::{Faults, RetryAfterFormat};
use super::jobs::{Idempotency, Job, JobSpec, JobStore, NoRoom, PlannedFailure};
use super::ratelimit::RateLimiter;
use super::rng::{SplitMix64, hits};
use super::signing::Keys;
use super::stats::Stats;
use super::train::train;
use crate::cxone::Call;
use crate::cxone::client::required_scopes;
use crate::cxone::model::{
    ApiErrorBody, ArtifactUrls, ExportResponse, JobState, SubmitResponse, TokenResponse,
    TrainingJobRequest, paths,
};
use crate::training::validation::truncate;
use crate::training::{ValidationRules, validate_request};

/// Largest response body that fault injection re-reads to mangle (the simulator's own output).
const RESPONSE_REWRITE_LIMIT: usize = 64 * 1024 * 1024;
/// Largest token request, fault settings or other small body.
const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Longest a submission's body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Job ids and paths are cut to this many characters in messages.
const MAX_ECHO_CHARS: usize = 80;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const MODEL_WEIGHTS_FILE: &str = "model-weights.json";
const CONFIG_FILE: &str = "config.json";

/// Locks a mutex; no code panics while holding one, and a poisoned lock still holds
/// consistent data, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of one simulator.
pub(crate) struct Simulator {
    config: SimulatorConfig,
    clients: HashMap<String, ClientCredentials>,
    rules: ValidationRules,
    keys: Keys,
    local_addr: SocketAddr,
    faults: Mutex<Faults>,
    /// Draws of request-level faults, in request order.
    dice: Mutex<SplitMix64>,
    /// Draws of job failures, in submission order.
    job_rng: Mutex<SplitMix64>,
    tokens: Mutex<TokenStore>,
    jobs: Mutex<JobStore>,
    limiter: Mutex<RateLimiter>,
    stats: Mutex<Stats>,
    /// SHA-256 of the admin token (hex), when admin requests need one.
    admin_token_digest: Option<String>,
    /// Request body bytes being read or processed by submissions, in KiB, at most
    /// `max_request_bytes` at once: one submission of the largest size, or many small ones.
    submission_budget: tokio::sync::Semaphore,
}

impl Simulator {
    pub(crate) fn new(config: SimulatorConfig, local_addr: SocketAddr) -> Self {
        let clients = config
            .clients
            .iter()
            .map(|c| (c.client_id.clone(), c.clone()))
            .collect();
        let rules = ValidationRules {
            min_utterances_per_label: 1,
            max_class_imbalance_ratio: config.max_class_imbalance_ratio,
            ..ValidationRules::default()
        };
        Self {
            clients,
            rules,
            keys: Keys::random(),
            local_addr,
            faults: Mutex::new(config.faults.clone()),
            dice: Mutex::new(SplitMix64::new(config.seed)),
            // A different stream, so job failures do not shift with the number of requests.
            job_rng: Mutex::new(SplitMix64::new(config.seed ^ 0x6A09_E667_F3BC_C908)),
            tokens: Mutex::new(TokenStore::new(config.max_tokens)),
            jobs: Mutex::new(JobStore::new(config.max_jobs, config.max_job_memory)),
            limiter: Mutex::default(),
            stats: Mutex::default(),
            admin_token_digest: match &config.admin {
                AdminAccess::Token(token) => Some(hex::encode(Sha256::digest(token.as_bytes()))),
                AdminAccess::Disabled | AdminAccess::Open => None,
            },
            submission_budget: tokio::sync::Semaphore::new(
                budget_kib(config.max_request_bytes) as usize
            ),
            config,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let (jobs, jobs_evicted, jobs_memory_bytes, idempotency_keys) = {
            let store = lock(&self.jobs);
            (
                store.state_counts(Instant::now()),
                store.evicted(),
                store.bytes(),
                store.idempotency_keys(),
            )
        };
        let (tokens_stored, tokens_evicted) = {
            let store = lock(&self.tokens);
            (store.len(), store.evicted())
        };
        let mut stats = lock(&self.stats).clone();
        stats.jobs = jobs;
        stats.jobs_evicted = jobs_evicted;
        stats.jobs_memory_bytes = jobs_memory_bytes as u64;
        stats.idempotency_keys = idempotency_keys as u64;
        stats.tokens_stored = tokens_stored as u64;
        stats.tokens_evicted = tokens_evicted;
        stats
    }

    /// Whether an admin request may proceed: `Err` is the answer when it may not.
    fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match &self.config.admin {
            AdminAccess::Open => Ok(()),
            AdminAccess::Disabled => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the simulator's /_sim admin endpoints are disabled; start it with --admin-token-file PATH \
                 (then send Authorization: Bearer <token>) or, on a loopback address only, --admin-open",
            )),
            AdminAccess::Token(_) => {
                let given = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim());
                // Digests have the same length whatever was sent, and are compared in constant
                // time, so neither the token's content nor its length leaks through timing.
                let matches = match (given, &self.admin_token_digest) {
                    (Some(given), Some(expected)) => {
                        secrets_equal(&hex::encode(Sha256::digest(given.as_bytes())), expected)
                    }
                    _ => false,
                };
                if matches {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_admin_token",
                        "the /_sim admin endpoints need Authorization: Bearer <the token in the simulator's --admin-token-file>",
                    )
                    .with_header(WWW_AUTHENTICATE, r#"Bearer realm="cxone-simulator-admin""#))
                }
            }
        }
    }

    pub(crate) fn timelines(&self) -> Vec<super::JobTimeline> {
        lock(&self.jobs).timelines(Instant::now())
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Whether this artifact download is one `expire_artifact_downloads` refuses (counting it).
    fn take_artifact_expiry(&self) -> bool {
        let mut faults = lock(&self.faults);
        if faults.expire_artifact_downloads > 0 {
            faults.expire_artifact_downloads -= 1;
            return true;
        }
        false
    }

    /// Revokes every issued token; returns how many were still valid.
    pub(crate) fn revoke_tokens(&self) -> usize {
        lock(&self.tokens).revoke_all(Instant::now())
    }

    fn record_fault(&self, kind: &str) {
        lock(&self.stats).record_fault(kind);
    }

    /// Checks the bearer token, the client's rate limit and the scopes `call` requires.
    fn authorize(&self, headers: &HeaderMap, call: Call) -> Result<Grant, ApiError> {
        let required = required_scopes(call);
        let token = bearer_token(headers)?;
        let grant = lock(&self.tokens)
            .check(token, Instant::now())
            .map_err(|problem| ApiError::invalid_token(problem.to_string()))?
            .clone();
        self.rate_limit(&grant.client_id)?;
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|s| !grant.scopes.iter().any(|have| have == s))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::insufficient_scope(&missing, required));
        }
        Ok(grant)
    }

    fn rate_limit(&self, client_id: &str) -> Result<(), ApiError> {
        let (limit, format) = {
            let faults = lock(&self.faults);
            (faults.rate_limit_per_second, faults.retry_after_format)
        };
        let Some(per_second) = limit.filter(|r| r.is_finite() && *r > 0.0) else {
            return Ok(());
        };
        let wait = match lock(&self.limiter).acquire(client_id, per_second, Instant::now()) {
            Ok(()) => return Ok(()),
            Err(wait) => wait,
        };
        lock(&self.stats).rate_limited += 1;
        // Whole seconds, at least 1 (and at most a day, for absurdly low rates).
        let seconds = wait.as_secs_f64().ceil().clamp(1.0, 86_400.0) as u64;
        let retry_after = match format {
            RetryAfterFormat::Seconds => seconds.to_string(),
            RetryAfterFormat::HttpDate => {
                let now = SystemTime::now();
                httpdate::fmt_http_date(
                    now.checked_add(Duration::from_secs(seconds)).unwrap_or(now),
                )
            }
        };
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "client {client_id:?} exceeded its rate limit of {per_second} requests per second; retry after {seconds}s"
            ),
        )
        .with_header(RETRY_AFTER, &retry_after))
    }

    /// Base of the URLs the simulator hands out: `--public-url`, else the request's `Host`.
    fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.clone();
        }
        let host = headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
        match host {
            Some(host) => format!("http://{host}"),
            None => format!("http://{}", self.local_addr),
        }
    }

    fn plan_failure(&self) -> Option<PlannedFailure> {
        let rate = lock(&self.faults).job_failure_rate;
        let mut rng = lock(&self.job_rng);
        // Always three draws per job, so one job's outcome does not shift the next one's.
        let (fails, at, cause) = (rng.next_f64(), rng.next_f64(), rng.below(3));
        hits(fails, rate).then_some(PlannedFailure {
            // Well inside TRAINING (which runs from 20 % to 80 % of the duration).
            at: 0.25 + 0.5 * at,
            cause,
        })
    }
}

/// What a request is, for the stats: one of the API calls, an artifact download, or a path that
/// is none of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
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
struct Dice {
    fault: f64,
    fault_kind: f64,
    slow: f64,
    malformed: f64,
    post_commit: f64,
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

/// The router of a simulator.
pub(crate) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route(paths::TOKEN, post(token))
        .route(paths::JOBS, post(submit))
        .route(&paths::job("{job_id}"), get(job_status))
        .route(&paths::evaluation("{job_id}"), get(evaluation))
        .route(&paths::export("{job_id}"), get(export))
        .route(&paths::cancel("{job_id}"), post(cancel))
        .route("/_sim/artifacts/{job_id}/{file}", get(artifact))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/tokens/revoke", post(revoke_tokens))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim)
}

/// Injects faults, counts every response, and logs requests (path only: queries carry
/// signatures).
async fn gate(State(sim): State<Arc<Simulator>>, mut req: Request, next: Next) -> Response {
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

// ---------------------------------------------------------------------------------------------
// Errors

/// An error response: status, `ApiErrorBody`, and headers such as `WWW-Authenticate`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Box<ApiErrorBody>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ApiErrorBody {
                error: error.to_string(),
                message: message.into(),
                details: Vec::new(),
                job_id: None,
            }),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    fn with_error(mut self, error: &str) -> Self {
        self.body.error = error.to_string();
        self
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", message).with_header(
            WWW_AUTHENTICATE,
            r#"Bearer realm="cxone", error="invalid_token""#,
        )
    }

    fn invalid_client(message: impl Into<String>, tried_basic: bool) -> Self {
        let error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", message);
        if tried_basic {
            error.with_header(WWW_AUTHENTICATE, r#"Basic realm="cxone""#)
        } else {
            error
        }
    }

    fn insufficient_scope(missing: &[&str], required: &[&str]) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "the access token lacks the scope{} {} that this call requires; request {} when obtaining the token",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                required.join(" ")
            ),
        )
        .with_header(
            WWW_AUTHENTICATE,
            &format!(
                r#"Bearer realm="cxone", error="insufficient_scope", scope="{}""#,
                required.join(" ")
            ),
        )
    }

    fn job_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!(
                "no training job {:?} exists for this client",
                truncate(id, MAX_ECHO_CHARS)
            ),
        )
    }

    fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than the simulator's limit of {limit} bytes (--max-request-bytes); send fewer or shorter utterances"
            ),
        )
    }

    fn forbidden_artifact(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "invalid_signature", message)
    }

    fn injected(status: StatusCode) -> Self {
        let (error, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
            (
                "service_unavailable",
                "the training service is temporarily unavailable; retry after a delay",
            )
        } else {
            (
                "internal_error",
                "the training service failed to process the request; retry after a delay",
            )
        };
        Self::new(status, error, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::invalid_token(
            "missing Authorization header; send Authorization: Bearer <access token from POST /oauth/token>",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::invalid_token("the Authorization header is not valid ASCII"))?;
    match value.trim().split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::invalid_token(
            "the Authorization header must be \"Bearer <access token>\"",
        )),
    }
}

/// The request's `Content-Length`, if it declares one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Permits of the submission budget for a body of `bytes` bytes (whole KiB, at least one).
fn budget_kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// Reads a body of at most `limit` bytes, stopping as soon as it passes the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut stream = body.into_data_stream();
    // Trust the declared length for preallocation only up to 1 MiB.
    let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n.min(1 << 20) as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid_request(format!("the request body could not be read: {e}"))
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::invalid_request(format!("invalid job id in the path: {e}")))
}

fn json_response(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// POST /oauth/token

async fn token(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let limit = SMALL_BODY_LIMIT.min(sim.config.max_request_bytes);
    let bytes = read_body(&parts.headers, body, limit).await?;
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let params = if is_json {
        serde_json::from_slice::<TokenParams>(&bytes)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON token request: {e}")))?
    } else {
        TokenParams::from_form(&bytes)
            .map_err(|e| ApiError::invalid_request(format!("invalid token request: {e}")))?
    };

    let grant_type = params.grant_type.as_deref().ok_or_else(|| {
        ApiError::invalid_request("missing grant_type; use grant_type=client_credentials")
    })?;
    if grant_type != "client_credentials" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!(
                "grant_type {:?} is not supported; use client_credentials",
                truncate(grant_type, MAX_ECHO_CHARS)
            ),
        ));
    }

    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let basic = basic_credentials(authorization).map_err(|e| {
        ApiError::invalid_client(format!("client authentication failed: {e}"), true)
    })?;
    let tried_basic = basic.is_some();
    let (id, secret) = match (basic, params.client_id, params.client_secret) {
        // Some clients repeat the client id in the body next to Basic credentials; that is
        // harmless as long as it is the same id.
        (Some(credentials), None, None) => credentials,
        (Some(credentials), Some(body_id), None) if body_id == credentials.0 => credentials,
        (Some(_), _, _) => {
            return Err(ApiError::invalid_request(
                "client credentials are given both in the Authorization header and in the body; use one method",
            ));
        }
        (None, Some(id), Some(secret)) => (id, secret),
        (None, id, secret) => {
            let missing: Vec<&str> = [
                ("client_id", id.is_none()),
                ("client_secret", secret.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            return Err(ApiError::invalid_request(format!(
                "missing {}; send client_id and client_secret in the body or use HTTP Basic authentication",
                missing.join(" and ")
            )));
        }
    };
    // RFC 6749 §2.3.1: Basic credentials are form-encoded first; many clients skip that step,
    // so both forms are accepted.
    let decoded = if tried_basic {
        form_decode(&id).zip(form_decode(&secret))
    } else {
        None
    };
    let failed = || {
        ApiError::invalid_client(
            "client authentication failed: unknown client id or wrong secret",
            tried_basic,
        )
    };
    let client = sim
        .clients
        .get(&id)
        .or_else(|| decoded.as_ref().and_then(|(id, _)| sim.clients.get(id)))
        .ok_or_else(failed)?;
    // Limit before the secret is checked, so guessing a secret is rate limited too.
    sim.rate_limit(&client.client_id)?;
    let secret_matches = secrets_equal(&secret, &client.client_secret)
        || decoded
            .as_ref()
            .is_some_and(|(_, secret)| secrets_equal(secret, &client.client_secret));
    if !secret_matches {
        return Err(failed());
    }

    let requested = parse_scopes(params.scope.as_deref());
    let granted: Vec<String> = if requested.is_empty() {
        client.scopes.clone()
    } else {
        requested
            .iter()
            .filter(|s| client.scopes.contains(s))
            .cloned()
            .collect()
    };
    if granted.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "none of the requested scopes ({}) is allowed for client {:?}; it may request {}",
                truncate(&requested.join(" "), 200),
                client.client_id,
                client.scopes.join(" ")
            ),
        ));
    }
    let ttl = sim.config.token_ttl;
    let access_token = lock(&sim.tokens).issue(
        &sim.keys,
        Grant {
            client_id: client.client_id.clone(),
            scopes: granted.clone(),
        },
        ttl,
        Instant::now(),
    );
    lock(&sim.stats).tokens_issued += 1;
    let body = TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs_f64().ceil() as u64,
        scope: Some(granted.join(" ")),
    };
    let mut response = json_response(StatusCode::OK, body);
    // RFC 6749 §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// POST /api/v2/ai/skills/training/jobs

async fn submit(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let grant = sim.authorize(&parts.headers, Call::Submit)?;
    let key = match parts.headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN);
            Some(key.ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
                ))
            })?.to_string())
        }
    };
    let limit = sim.config.max_request_bytes;
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    // Held until the response: reading, parsing, validating and training all scale with the body.
    let _budget = sim
        .submission_budget
        .acquire_many(budget_kib(declared.map_or(limit, |n| n as usize)))
        .await
        .map_err(|_| ApiError::injected(StatusCode::SERVICE_UNAVAILABLE))?;
    // A body that trickles in must not hold the budget for long.
    let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, read_body(&parts.headers, body, limit))
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
    drop(bytes);
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

    let report = validate_request(&request, &sim.rules);
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
    let language = report
        .language
        .clone()
        .unwrap_or_else(|| request.training_data.language.clone());

    // Training a large payload takes a while: keep it off the async workers.
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

    let now = Instant::now();
    let job_id = {
        let mut jobs = lock(&sim.jobs);
        // Another request with the same key may have created the job while this one trained.
        if let Some(key) = &key {
            let found = jobs.idempotency(&grant.client_id, key, &fingerprint, now);
            if let Some(response) = idempotent_answer(&sim, found)? {
                return Ok(response);
            }
        }
        let id = sim.keys.job_id(jobs.created());
        let job = Job::new(
            id.clone(),
            grant.client_id.clone(),
            spec,
            Arc::new(training),
            sim.config.job_duration,
            sim.plan_failure(),
            now,
        );
        jobs.make_room(now, job.approx_bytes())
            .map_err(|no_room| no_room_error(&no_room))?;
        jobs.insert(job, key.map(|k| (k, fingerprint)), now);
        id
    };
    lock(&sim.stats).jobs_created += 1;
    tracing::info!(job_id = %job_id, client_id = %grant.client_id, "training job created");

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
            job_id,
            status: JobState::Queued,
        },
    ))
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

// ---------------------------------------------------------------------------------------------
// Job endpoints

async fn job_status(
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

async fn evaluation(
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

async fn export(
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

async fn cancel(
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

// ---------------------------------------------------------------------------------------------
// GET /_sim/artifacts/{jobId}/{file}?expires=…&signature=…

#[derive(Deserialize)]
struct SignedQuery {
    expires: Option<String>,
    signature: Option<String>,
}

async fn artifact(
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

// ---------------------------------------------------------------------------------------------
// Admin endpoints and fallbacks

async fn stats(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, sim.stats())
}

async fn get_faults(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, sim.faults())
}

async fn put_faults(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
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

async fn revoke_tokens(State(sim): State<Arc<Simulator>>) -> Response {
    let revoked = sim.revoke_tokens();
    tracing::info!(revoked, "access tokens revoked");
    json_response(StatusCode::OK, json!({ "revoked": revoked }))
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {method} {}", truncate(uri.path(), 200)),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", truncate(uri.path(), 200)),
    )
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
