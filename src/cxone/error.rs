//! Classified errors of CXone calls.
//!
//! The client never sleeps and retries by itself (except the one token refresh after a 401): it
//! says what happened and, where it knows, when to try again, so the controller can requeue.

use std::time::Duration;

/// Which API call failed; used in messages and as a low-cardinality metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Token,
    Submit,
    Status,
    Evaluation,
    Export,
    Cancel,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Token => "token",
            Call::Submit => "submit",
            Call::Status => "status",
            Call::Evaluation => "evaluation",
            Call::Export => "export",
            Call::Cancel => "cancel",
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transient failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transient {
    /// HTTP 5xx.
    Server(u16),
    /// No answer within the call's timeout.
    Timeout,
    /// The connection could not be made or broke.
    Connection,
}

/// Why authentication or authorisation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthProblem {
    /// The token endpoint rejected the client id or secret.
    InvalidClient,
    /// A fresh token was still rejected (401 twice).
    TokenRejected,
    /// The token lacks a scope the call needs (403).
    MissingScope { scopes: Vec<String> },
}

/// A failed CXone call. `Display` never includes tokens, secrets or signed URLs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CxoneError {
    /// 5xx, timeout or connection failure: try again after a backoff.
    #[error("{call}: {}", describe_transient(*.kind, .message))]
    Retryable {
        call: Call,
        kind: Transient,
        message: String,
    },
    /// 429: try again after `retry_after` (from `Retry-After`, seconds or HTTP-date).
    #[error("{call}: rate limited by CXone, retry after {}s", .retry_after.as_secs_f64())]
    RateLimited { call: Call, retry_after: Duration },
    /// Credentials or scopes are wrong: retrying does not help until they change.
    #[error("{call}: {}", describe_auth(.problem, .message))]
    Auth {
        call: Call,
        problem: AuthProblem,
        message: String,
    },
    /// Another 4xx: CXone refused the request and said why.
    #[error("{call}: CXone rejected the request ({status} {code}): {message}{}", describe_details(.details))]
    Rejected {
        call: Call,
        status: u16,
        code: String,
        message: String,
        details: Vec<String>,
    },
    /// (ext) 409 `idempotency_key_reused`: the key already names job `job_id` (submitted with
    /// another payload). The key is ours (derived from the job's uid), so the job is ours.
    #[error("{call}: the idempotency key already names CXone job {job_id}")]
    KeyInUse { call: Call, job_id: String },
    /// The response could not be understood.
    #[error("{call}: malformed response from CXone: {message}")]
    Malformed { call: Call, message: String },
    /// A successful response's body passed the client's limit for this call; it was not read
    /// further. Retrying gets the same body, so this waits like any other non-transient error.
    #[error("{call}: the CXone response body is larger than the {} limit for {call} responses; it was not read", crate::text::human_bytes(*.limit))]
    TooLarge { call: Call, limit: usize },
    /// The request could not be built (bad endpoint URL, bad job id): a bug or a bad spec.
    #[error("{call}: invalid request: {message}")]
    InvalidRequest { call: Call, message: String },
}

fn describe_transient(kind: Transient, message: &str) -> String {
    match kind {
        Transient::Server(code) => format!("CXone answered {code}, will retry: {message}"),
        Transient::Timeout => format!("timed out, will retry: {message}"),
        Transient::Connection => format!("connection failed, will retry: {message}"),
    }
}

fn describe_auth(problem: &AuthProblem, message: &str) -> String {
    let what = match problem {
        AuthProblem::InvalidClient => {
            "CXone rejected the client id or secret; check the credentials Secret".to_string()
        }
        AuthProblem::TokenRejected => {
            "CXone rejected a freshly issued token; check that the client is allowed to use this API"
                .to_string()
        }
        AuthProblem::MissingScope { scopes } if scopes.is_empty() => {
            "the token lacks a required scope; grant the client the ai:skills and ai:training scopes"
                .to_string()
        }
        AuthProblem::MissingScope { scopes } => format!(
            "the token lacks scope {}; grant it to the client in CXone",
            scopes.join(", ")
        ),
    };
    if message.is_empty() {
        what
    } else {
        format!("{what} ({message})")
    }
}

fn describe_details(details: &[String]) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {}", details.join("; "))
    }
}

impl CxoneError {
    pub fn call(&self) -> Call {
        match self {
            CxoneError::Retryable { call, .. }
            | CxoneError::RateLimited { call, .. }
            | CxoneError::Auth { call, .. }
            | CxoneError::Rejected { call, .. }
            | CxoneError::KeyInUse { call, .. }
            | CxoneError::Malformed { call, .. }
            | CxoneError::TooLarge { call, .. }
            | CxoneError::InvalidRequest { call, .. } => *call,
        }
    }

    /// Static, low-cardinality category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            CxoneError::Retryable { .. } => "retryable",
            CxoneError::RateLimited { .. } => "rate_limited",
            CxoneError::Auth { .. } => "auth",
            CxoneError::Rejected { .. } => "rejected",
            CxoneError::KeyInUse { .. } => "key_in_use",
            CxoneError::Malformed { .. } => "malformed",
            CxoneError::TooLarge { .. } => "too_large",
            CxoneError::InvalidRequest { .. } => "invalid_request",
        }
    }

    /// When CXone said when to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CxoneError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without anything changing.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CxoneError::Retryable { .. } | CxoneError::RateLimited { .. }
        )
    }

    /// HTTP status of a rejection, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            CxoneError::Rejected { status, .. } => Some(*status),
            CxoneError::Retryable {
                kind: Transient::Server(s),
                ..
            } => Some(*s),
            CxoneError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
}

/// Longest `Retry-After` honoured; a larger value is clamped (a broken header must not park a job
/// for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Used when a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_in_both_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(12)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        let _ = SystemTime::now();
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = CxoneError::Auth {
            call: Call::Submit,
            problem: AuthProblem::MissingScope {
                scopes: vec!["ai:training:write".into()],
            },
            message: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "submit: the token lacks scope ai:training:write; grant it to the client in CXone"
        );
        assert_eq!(e.category(), "auth");
        assert!(!e.is_transient());
    }
}
