//! The HTTP side of the simulator: the state of one simulator ([`Simulator`]: clients, tokens,
//! jobs, faults, limits) with the checks every route shares (bearer token and scopes, rate
//! limit, admin access), and the router. One file per route family: `token`, `submit`, `job`
//! (status, evaluation, export, cancel), `artifact` (signed downloads), `admin` (`/_sim`,
//! health, fallbacks); `gate` is the middleware in front of them (fault injection, counting),
//! `error` the error answers, `request` the request-reading helpers. Handlers import the state
//! from here and the simulator's stores (`super::{auth, jobs, faults, …}`); nothing outside
//! `crate::simulator` imports this module.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::header::{AUTHORIZATION, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::middleware;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use super::auth::{Grant, TokenStore, secrets_equal};
use super::config::{AdminAccess, ClientCredentials, SimulatorConfig};
use super::faults::{Faults, RetryAfterFormat};
use super::jobs::{JobStore, PlannedFailure};
use super::ratelimit::RateLimiter;
use super::rng::{SplitMix64, hits};
use super::signing::Keys;
use super::stats::Stats;
use crate::cxone::Call;
use crate::cxone::client::required_scopes;
use crate::cxone::model::paths;
use crate::training::ValidationRules;

mod admin;
mod artifact;
mod error;
mod gate;
mod job;
mod request;
mod submit;
mod token;

use admin::{get_faults, healthz, method_not_allowed, not_found, put_faults, revoke_tokens, stats};
use artifact::artifact;
use error::ApiError;
use job::{cancel, evaluation, export, job_status};
use request::{bearer_token, budget_kib};
use submit::submit;
use token::token;

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
        .layer(middleware::from_fn_with_state(sim.clone(), gate::gate))
        .with_state(sim)
}
