//! The CXone AI training API client.
//!
//! Every call has a timeout, tokens are cached and shared (see [`TokenCache`]), a 401 invalidates
//! the token and retries the call once, and every failure is classified ([`CxoneError`]). The
//! client never sleeps between attempts: it reports when to try again and the caller requeues.
//! Imports the rest of `src/cxone/`, and `crate::http` for the client, timeouts, body caps,
//! capped reads and transport failures.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use super::endpoint::Endpoint;
use super::endpoint::join;
use super::error::{
    AuthProblem, Call, CxoneError, DEFAULT_RETRY_AFTER, Transient, parse_retry_after,
};
use super::model::{
    ApiErrorBody, EvaluationResponse, ExportResponse, JobStatus, SubmitResponse, TRAINING_SCOPES,
    TokenResponse, TrainingJobRequest, paths,
};
use super::token::{CachedToken, Credentials, SecretString, TokenCache, TokenKey, refresh_margin};
use crate::http::{self, Capped, Redirects, TransportFailure, read_capped};
use crate::text::human_bytes;

/// Timeouts and limits of the client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub token_timeout: Duration,
    pub submit_timeout: Duration,
    pub status_timeout: Duration,
    /// Evaluation and export.
    pub results_timeout: Duration,
    pub cancel_timeout: Duration,
    /// Largest response bodies read, per kind of response (see [`ResponseLimits`]).
    pub response_limits: ResponseLimits,
    pub user_agent: String,
}

/// Largest response bodies the client reads. Bodies are read chunk by chunk and reading stops as
/// soon as a limit is passed, so a huge or endless body costs at most the limit in memory.
///
/// The evaluation limit bounds the operator's memory: each of the `--concurrency` workers (8 by
/// default in the Helm chart) may hold one evaluation body, and 8 × 16 MiB = 128 MiB is half
/// the chart's 256Mi memory limit, leaving room for the decoded vectors and everything else.
/// 16 MiB holds the evaluation of a 250,000-utterance set (the validation limit) at the
/// default 0.2 split with label ids of up to about 60 characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Token, submit, status, export and cancel responses: small JSON documents.
    pub small: usize,
    /// Evaluation responses: per-example arrays that grow with the validation split.
    pub evaluation: usize,
    /// Error responses (any status but 2xx): only the message and details are kept; a larger
    /// body is not read at all.
    pub error: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            small: http::MAX_CXONE_SMALL_BODY,
            evaluation: http::MAX_CXONE_EVALUATION_BODY,
            error: http::MAX_ERROR_BODY,
        }
    }
}

impl ResponseLimits {
    /// The limit of a successful response of `call`.
    pub fn success(&self, call: Call) -> usize {
        match call {
            Call::Evaluation => self.evaluation,
            Call::Token | Call::Submit | Call::Status | Call::Export | Call::Cancel => self.small,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: http::CXONE_CONNECT_TIMEOUT,
            token_timeout: http::CXONE_TOKEN_TIMEOUT,
            submit_timeout: http::CXONE_SUBMIT_TIMEOUT,
            status_timeout: http::CXONE_STATUS_TIMEOUT,
            results_timeout: http::CXONE_RESULTS_TIMEOUT,
            cancel_timeout: http::CXONE_CANCEL_TIMEOUT,
            response_limits: ResponseLimits::default(),
            user_agent: http::USER_AGENT.to_string(),
        }
    }
}

/// What a call is made against: which endpoint, with which credentials.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub endpoint: &'a Endpoint,
    pub credentials: &'a Credentials,
}

/// Result of a cancel request.
#[derive(Clone, Debug, PartialEq)]
pub enum CancelOutcome {
    /// The job was running and is now cancelled.
    Cancelled(Box<JobStatus>),
    /// The job had already finished (409).
    AlreadyTerminal,
    /// CXone does not know the job (404): never created, or gone.
    NotFound,
}

/// Told about every HTTP exchange with CXone (for metrics). `status` is `None` when no response
/// arrived (timeout, connection failure).
pub trait CallObserver: Send + Sync {
    fn observe(&self, call: Call, status: Option<u16>, elapsed: Duration);
}

/// The CXone client. Cheap to clone; clones share the connection pool and the token cache.
#[derive(Clone)]
pub struct CxoneClient {
    http: reqwest::Client,
    tokens: TokenCache,
    config: std::sync::Arc<ClientConfig>,
    observer: Option<std::sync::Arc<dyn CallObserver>>,
}

impl CxoneClient {
    pub fn new(config: ClientConfig) -> Result<Self, CxoneError> {
        // Never follow a redirect: it could carry the bearer token to another host.
        let http = http::client(
            config.connect_timeout,
            None,
            &config.user_agent,
            Redirects::Never,
        )
        .map_err(|message| CxoneError::InvalidRequest {
            call: Call::Token,
            message,
        })?;
        Ok(Self::with_http(http, TokenCache::new(), config))
    }

    pub fn with_http(http: reqwest::Client, tokens: TokenCache, config: ClientConfig) -> Self {
        Self {
            http,
            tokens,
            config: std::sync::Arc::new(config),
            observer: None,
        }
    }

    /// Reports every exchange to `observer`.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(
        &self,
        call: Call,
        result: &Result<reqwest::Response, reqwest::Error>,
        started: Instant,
    ) {
        if let Some(o) = &self.observer {
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            o.observe(call, status, started.elapsed());
        }
    }

    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Submits a training job. The same `idempotency_key` always yields the same CXone job.
    pub async fn submit(
        &self,
        target: Target<'_>,
        request: &TrainingJobRequest,
        idempotency_key: &str,
    ) -> Result<SubmitResponse, CxoneError> {
        let call = Call::Submit;
        let body = serde_json::to_vec(request).map_err(|e| CxoneError::InvalidRequest {
            call,
            message: format!("cannot encode the payload: {e}"),
        })?;
        let key =
            HeaderValue::from_str(idempotency_key).map_err(|_| CxoneError::InvalidRequest {
                call,
                message: "the idempotency key is not a valid header value".into(),
            })?;
        let mut headers = HeaderMap::new();
        headers.insert("Idempotency-Key", key);
        let resp: SubmitResponse = self
            .call(
                target,
                call,
                Method::POST,
                paths::JOBS,
                Some(body),
                headers,
                self.config.submit_timeout,
            )
            .await?;
        check_job_id(&resp.job_id).map_err(|message| CxoneError::Malformed { call, message })?;
        Ok(resp)
    }

    /// (ext) The CXone job created under `idempotency_key`, if any, without creating one: a
    /// submission under the key with a payload CXone must refuse (no utterances). A known key
    /// answers 409 with its job; a new key answers 400 and nothing is created.
    pub async fn lookup(
        &self,
        target: Target<'_>,
        idempotency_key: &str,
    ) -> Result<Option<String>, CxoneError> {
        let probe = TrainingJobRequest {
            skill_id: "idempotency-key-lookup".into(),
            training_data: crate::cxone::model::TrainingData {
                utterances: Vec::new(),
                validation_split: 0.2,
                language: "en".into(),
            },
            labels: Vec::new(),
            hyperparameters: Default::default(),
        };
        match self.submit(target, &probe, idempotency_key).await {
            Ok(resp) => Ok(Some(resp.job_id)),
            Err(CxoneError::KeyInUse { job_id, .. }) => Ok(Some(job_id)),
            Err(CxoneError::Rejected { status: 400, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Current state of a job.
    pub async fn status(&self, target: Target<'_>, job_id: &str) -> Result<JobStatus, CxoneError> {
        let call = Call::Status;
        let path = paths::job(valid_job_id(call, job_id)?);
        let status: JobStatus = self
            .call_plain(target, call, Method::GET, &path, self.config.status_timeout)
            .await?;
        check_status(call, job_id, &status)?;
        Ok(status)
    }

    /// Evaluation of a completed job.
    pub async fn evaluation(
        &self,
        target: Target<'_>,
        job_id: &str,
    ) -> Result<EvaluationResponse, CxoneError> {
        let call = Call::Evaluation;
        let path = paths::evaluation(valid_job_id(call, job_id)?);
        self.call_plain(
            target,
            call,
            Method::GET,
            &path,
            self.config.results_timeout,
        )
        .await
    }

    /// Signed, expiring artifact URLs of a completed job.
    pub async fn export(
        &self,
        target: Target<'_>,
        job_id: &str,
    ) -> Result<ExportResponse, CxoneError> {
        let call = Call::Export;
        let path = paths::export(valid_job_id(call, job_id)?);
        let resp: ExportResponse = self
            .call_plain(
                target,
                call,
                Method::GET,
                &path,
                self.config.results_timeout,
            )
            .await?;
        for (name, url) in [
            ("modelWeightsUrl", &resp.artifacts.model_weights_url),
            ("configUrl", &resp.artifacts.config_url),
        ] {
            // Never echo the URL itself: it carries a signature.
            match Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => {}
                _ => {
                    return Err(CxoneError::Malformed {
                        call,
                        message: format!("artifacts.{name} is not an http(s) URL"),
                    });
                }
            }
        }
        Ok(resp)
    }

    /// Cancels a job; "already finished" and "not found" are outcomes, not errors.
    pub async fn cancel(
        &self,
        target: Target<'_>,
        job_id: &str,
    ) -> Result<CancelOutcome, CxoneError> {
        let call = Call::Cancel;
        let path = paths::cancel(valid_job_id(call, job_id)?);
        let result: Result<JobStatus, CxoneError> = self
            .call_plain(
                target,
                call,
                Method::POST,
                &path,
                self.config.cancel_timeout,
            )
            .await;
        match result {
            Ok(status) => {
                check_status(call, job_id, &status)?;
                Ok(CancelOutcome::Cancelled(Box::new(status)))
            }
            Err(CxoneError::Rejected { status: 409, .. }) => Ok(CancelOutcome::AlreadyTerminal),
            Err(CxoneError::Rejected { status: 404, .. }) => Ok(CancelOutcome::NotFound),
            Err(e) => Err(e),
        }
    }

    /// [`Self::call`] without a body or extra headers.
    async fn call_plain<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        call: Call,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<T, CxoneError> {
        self.call(target, call, method, path, None, HeaderMap::new(), timeout)
            .await
    }

    /// One API call with the 401 → refresh → retry-once rule.
    #[allow(clippy::too_many_arguments)]
    async fn call<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        call: Call,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<T, CxoneError> {
        let url = join(target.endpoint.base_url(), path)
            .map_err(|message| CxoneError::InvalidRequest { call, message })?;
        let mut refreshed = false;
        loop {
            let token = self.token(target).await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .headers(headers.clone())
                .bearer_auth(token.access_token.expose())
                .header(header::ACCEPT, "application/json");
            if let Some(body) = &body {
                req = req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let started = Instant::now();
            let sent = req.send().await;
            self.observe(call, &sent, started);
            let resp = sent.map_err(|e| transport_error(call, e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                self.invalidate(target, &token.access_token).await;
                if !refreshed {
                    refreshed = true;
                    continue;
                }
                let body = self.read_error(resp).await;
                return Err(CxoneError::Auth {
                    call,
                    problem: AuthProblem::TokenRejected,
                    message: body.message,
                });
            }
            if status == StatusCode::FORBIDDEN {
                let www = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = self.read_error(resp).await;
                let scopes = missing_scopes(call, www.as_deref(), &token.granted);
                return Err(CxoneError::Auth {
                    call,
                    problem: AuthProblem::MissingScope { scopes },
                    message: body.message,
                });
            }
            return self.decode(call, resp).await;
        }
    }

    /// Turns a response into `T` or a classified error (everything but 401/403).
    async fn decode<T: DeserializeOwned>(
        &self,
        call: Call,
        resp: reqwest::Response,
    ) -> Result<T, CxoneError> {
        let status = resp.status();
        if status.is_success() {
            let bytes = self.read_body(call, resp).await?;
            return serde_json::from_slice(&bytes).map_err(|e| CxoneError::Malformed {
                call,
                message: format!("{call} response: {e}"),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .unwrap_or(DEFAULT_RETRY_AFTER);
            return Err(CxoneError::RateLimited { call, retry_after });
        }
        let body = self.read_error(resp).await;
        if status.is_server_error() {
            return Err(CxoneError::Retryable {
                call,
                kind: Transient::Server(status.as_u16()),
                message: body.message,
            });
        }
        if status == StatusCode::CONFLICT
            && body.error == "idempotency_key_reused"
            && let Some(job_id) = body.job_id.filter(|id| check_job_id(id).is_ok())
        {
            return Err(CxoneError::KeyInUse { call, job_id });
        }
        Err(CxoneError::Rejected {
            call,
            status: status.as_u16(),
            code: body.error,
            message: body.message,
            details: body.details,
        })
    }

    /// Reads a successful response's body, failing as soon as it passes the call's limit.
    async fn read_body(
        &self,
        call: Call,
        resp: reqwest::Response,
    ) -> Result<bytes::Bytes, CxoneError> {
        let limit = self.config.response_limits.success(call);
        match read_capped(resp, limit).await {
            Ok(Capped::Complete(bytes)) => Ok(bytes),
            Ok(Capped::TooLarge) => Err(CxoneError::TooLarge { call, limit }),
            Err(e) => Err(transport_error(call, e)),
        }
    }

    /// Reads an error body; CXone's message if it sent one, else a short excerpt of the body.
    /// A body larger than the error limit is not read further and not quoted.
    async fn read_error(&self, resp: reqwest::Response) -> ApiErrorBody {
        let status = resp.status();
        let limit = self.config.response_limits.error;
        let bytes = match read_capped(resp, limit).await {
            Ok(Capped::Complete(bytes)) => bytes,
            Ok(Capped::TooLarge) => {
                return ApiErrorBody {
                    message: format!(
                        "{status}; the error body is larger than the {} limit and was not read",
                        human_bytes(limit)
                    ),
                    ..Default::default()
                };
            }
            // The status alone classifies the error; a body that broke off adds nothing.
            Err(_) => {
                return ApiErrorBody {
                    message: status.to_string(),
                    ..Default::default()
                };
            }
        };
        match serde_json::from_slice::<ApiErrorBody>(&bytes) {
            Ok(mut body) if !body.message.is_empty() || !body.error.is_empty() => {
                body.message = clip(&body.message, 1000);
                body.details = body.details.iter().take(50).map(|d| clip(d, 300)).collect();
                if body.message.is_empty() {
                    body.message = body.error.clone();
                }
                body
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                ApiErrorBody {
                    message: if text.is_empty() {
                        status.to_string()
                    } else {
                        clip(text, 200)
                    },
                    ..Default::default()
                }
            }
        }
    }

    /// A valid token for `target`, from the cache or freshly fetched (single flight per key).
    async fn token(&self, target: Target<'_>) -> Result<IssuedToken, CxoneError> {
        let key = token_key(target);
        let slot = self.tokens.slot(&key);
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && t.refresh_at > Instant::now()
        {
            return Ok(IssuedToken::from(t));
        }
        let fresh = self.fetch_token(target).await?;
        let issued = IssuedToken::from(&fresh);
        *cached = Some(fresh);
        Ok(issued)
    }

    async fn invalidate(&self, target: Target<'_>, rejected: &SecretString) {
        let slot = self.tokens.slot(&token_key(target));
        let mut cached = slot.lock().await;
        // Only drop the token that failed; another caller may already have refreshed it.
        if cached.as_ref().is_some_and(|t| &t.access_token == rejected) {
            *cached = None;
        }
    }

    async fn fetch_token(&self, target: Target<'_>) -> Result<CachedToken, CxoneError> {
        let call = Call::Token;
        let creds = target.credentials;
        let scope = TRAINING_SCOPES.join(" ");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose()),
            ("scope", scope.as_str()),
        ];
        let requested_at = Instant::now();
        let sent = self
            .http
            .post(target.endpoint.token_url().clone())
            .timeout(self.config.token_timeout)
            .header(header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        self.observe(call, &sent, requested_at);
        let resp = sent.map_err(|e| transport_error(call, e))?;
        let status = resp.status();
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED) {
            let body = self.read_error(resp).await;
            let problem = match body.error.as_str() {
                "invalid_scope" => Some(AuthProblem::MissingScope { scopes: Vec::new() }),
                "invalid_client" | "unauthorized_client" => Some(AuthProblem::InvalidClient),
                _ if status == StatusCode::UNAUTHORIZED => Some(AuthProblem::InvalidClient),
                _ => None,
            };
            return Err(match problem {
                Some(problem) => CxoneError::Auth {
                    call,
                    problem,
                    message: body.message,
                },
                None => CxoneError::Rejected {
                    call,
                    status: status.as_u16(),
                    code: body.error,
                    message: body.message,
                    details: body.details,
                },
            });
        }
        let token: TokenResponse = self.decode(call, resp).await?;
        if token.access_token.is_empty() {
            return Err(CxoneError::Malformed {
                call,
                message: "access_token is empty".into(),
            });
        }
        if !token.token_type.eq_ignore_ascii_case("bearer") {
            return Err(CxoneError::Malformed {
                call,
                message: format!("token_type {:?} is not Bearer", clip(&token.token_type, 32)),
            });
        }
        let lifetime = Duration::from_secs(token.expires_in.min(365 * 24 * 3600));
        let granted = token.scope.as_deref().map(|s| {
            s.split_whitespace()
                .map(str::to_string)
                .collect::<BTreeSet<_>>()
        });
        Ok(CachedToken {
            access_token: SecretString::new(token.access_token),
            refresh_at: requested_at + lifetime - refresh_margin(lifetime),
            granted,
        })
    }
}

/// A token handed to one call, with the scopes it was granted (when the server said).
struct IssuedToken {
    access_token: SecretString,
    granted: Option<BTreeSet<String>>,
}

impl From<&CachedToken> for IssuedToken {
    fn from(t: &CachedToken) -> Self {
        Self {
            access_token: t.access_token.clone(),
            granted: t.granted.clone(),
        }
    }
}

fn token_key(target: Target<'_>) -> TokenKey {
    TokenKey {
        token_url: target.endpoint.token_url().to_string(),
        client_id: target.credentials.client_id.clone(),
        scopes: TRAINING_SCOPES.join(" "),
        version: target.credentials.version.clone(),
    }
}

/// Scopes each call needs (docs/cxone-api.md).
pub fn required_scopes(call: Call) -> &'static [&'static str] {
    match call {
        Call::Token => &[],
        Call::Submit => &["ai:skills:write", "ai:training:write"],
        Call::Status | Call::Evaluation | Call::Export => &["ai:training:read"],
        Call::Cancel => &["ai:training:write"],
    }
}

/// Which scopes a 403 was about: from `WWW-Authenticate: Bearer scope="..."`, else the call's
/// required scopes missing from what the token was granted.
fn missing_scopes(
    call: Call,
    www_authenticate: Option<&str>,
    granted: &Option<BTreeSet<String>>,
) -> Vec<String> {
    if let Some(www) = www_authenticate
        && let Some(start) = www.find("scope=\"")
    {
        let rest = &www[start + 7..];
        if let Some(end) = rest.find('"') {
            let scopes: Vec<String> = rest[..end]
                .split_whitespace()
                .filter(|s| granted.as_ref().is_none_or(|g| !g.contains(*s)))
                .map(|s| clip(s, 64))
                .collect();
            if !scopes.is_empty() {
                return scopes;
            }
        }
    }
    match granted {
        Some(g) => required_scopes(call)
            .iter()
            .filter(|s| !g.contains(**s))
            .map(|s| s.to_string())
            .collect(),
        None => Vec::new(),
    }
}

fn transport_error(call: Call, e: reqwest::Error) -> CxoneError {
    let kind = match TransportFailure::of(&e) {
        TransportFailure::Timeout => Transient::Timeout,
        TransportFailure::Connect | TransportFailure::Other => Transient::Connection,
    };
    CxoneError::Retryable {
        call,
        kind,
        message: http::error_chain(e),
    }
}

/// Job ids go into URL paths: only accept a conservative alphabet.
fn check_job_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "job id {:?} is not 1-128 letters, digits, '-', '_' or '.'",
            clip(id, 64)
        ))
    }
}

fn valid_job_id(call: Call, id: &str) -> Result<&str, CxoneError> {
    check_job_id(id)
        .map(|_| id)
        .map_err(|message| CxoneError::InvalidRequest { call, message })
}

fn check_status(call: Call, asked: &str, status: &JobStatus) -> Result<(), CxoneError> {
    if status.job_id != asked {
        return Err(CxoneError::Malformed {
            call,
            message: format!(
                "asked for job {asked:?}, got job {:?}",
                clip(&status.job_id, 64)
            ),
        });
    }
    if status.progress > 100 {
        return Err(CxoneError::Malformed {
            call,
            message: format!("progress {} is above 100", status.progress),
        });
    }
    for (name, v) in [
        ("computeUnitsAllocated", status.compute_units_allocated),
        ("computeUnitsUsed", status.compute_units_used),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(CxoneError::Malformed {
                call,
                message: format!("{name} {v} is not a non-negative number"),
            });
        }
    }
    Ok(())
}

/// Shortens text from the network for messages.
fn clip(s: &str, max_chars: usize) -> String {
    crate::text::truncate_chars(s, max_chars)
}

#[cfg(test)]
mod tests;
