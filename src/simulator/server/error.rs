//! The simulator's error answers: [`ApiError`] (status, `ApiErrorBody`, headers such as
//! `WWW-Authenticate`) and one constructor per kind of refusal the endpoints share. Imports
//! only the CXone wire types.

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::MAX_ECHO_CHARS;
use crate::cxone::model::ApiErrorBody;
use crate::training::validation::truncate;

/// An error response: status, `ApiErrorBody`, and headers such as `WWW-Authenticate`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: Box<ApiErrorBody>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
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

    pub(super) fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub(super) fn with_error(mut self, error: &str) -> Self {
        self.body.error = error.to_string();
        self
    }

    pub(super) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(super) fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", message).with_header(
            WWW_AUTHENTICATE,
            r#"Bearer realm="cxone", error="invalid_token""#,
        )
    }

    pub(super) fn invalid_client(message: impl Into<String>, tried_basic: bool) -> Self {
        let error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", message);
        if tried_basic {
            error.with_header(WWW_AUTHENTICATE, r#"Basic realm="cxone""#)
        } else {
            error
        }
    }

    pub(super) fn insufficient_scope(missing: &[&str], required: &[&str]) -> Self {
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

    pub(super) fn job_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!(
                "no training job {:?} exists for this client",
                truncate(id, MAX_ECHO_CHARS)
            ),
        )
    }

    pub(super) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than the simulator's limit of {limit} bytes (--max-request-bytes); send fewer or shorter utterances"
            ),
        )
    }

    pub(super) fn forbidden_artifact(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "invalid_signature", message)
    }

    pub(super) fn injected(status: StatusCode) -> Self {
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

pub(super) type ApiResult = Result<Response, ApiError>;
