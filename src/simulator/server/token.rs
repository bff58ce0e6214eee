//! `POST /oauth/token`: the client-credentials grant (JSON body, form body or HTTP Basic, as
//! docs/cxone-api.md describes), in phases: read the parameters, check the grant type, find the
//! client's credentials, authenticate, grant scopes, issue the token.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{ApiError, ApiResult};
use super::request::{json_response, read_body};
use super::{MAX_ECHO_CHARS, SMALL_BODY_LIMIT, Simulator, lock};
use crate::cxone::model::TokenResponse;
use crate::simulator::auth::{
    Grant, TokenParams, basic_credentials, form_decode, parse_scopes, secrets_equal,
};
use crate::simulator::config::ClientCredentials;
use crate::training::validation::truncate;

pub(super) async fn token(State(sim): State<Arc<Simulator>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let limit = SMALL_BODY_LIMIT.min(sim.config.max_request_bytes);
    let bytes = read_body(&parts.headers, body, limit).await?;
    let params = token_params(&parts.headers, &bytes)?;
    check_grant_type(&params)?;
    let presented =
        PresentedCredentials::of(&parts.headers, params.client_id, params.client_secret)?;
    let client = authenticate(&sim, &presented)?;
    let granted = grant_scopes(client, params.scope.as_deref())?;
    Ok(issue(&sim, client, granted))
}

/// The token request's parameters: a JSON body when the content type says so, else a form.
fn token_params(headers: &HeaderMap, bytes: &[u8]) -> Result<TokenParams, ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if is_json {
        serde_json::from_slice::<TokenParams>(bytes)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON token request: {e}")))
    } else {
        TokenParams::from_form(bytes)
            .map_err(|e| ApiError::invalid_request(format!("invalid token request: {e}")))
    }
}

/// Only the client-credentials grant is supported.
fn check_grant_type(params: &TokenParams) -> Result<(), ApiError> {
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
    Ok(())
}

/// The client id and secret a request presents, in the Authorization header (HTTP Basic) or in
/// the body, never both.
struct PresentedCredentials {
    id: String,
    secret: String,
    /// Whether they came by HTTP Basic (a refusal then carries `WWW-Authenticate: Basic`).
    tried_basic: bool,
}

impl PresentedCredentials {
    fn of(
        headers: &HeaderMap,
        body_id: Option<String>,
        body_secret: Option<String>,
    ) -> Result<Self, ApiError> {
        let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let basic = basic_credentials(authorization).map_err(|e| {
            ApiError::invalid_client(format!("client authentication failed: {e}"), true)
        })?;
        let tried_basic = basic.is_some();
        let (id, secret) = match (basic, body_id, body_secret) {
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
        Ok(Self {
            id,
            secret,
            tried_basic,
        })
    }
}

/// The registered client the credentials belong to, rate limited before the secret is checked
/// so guessing a secret is rate limited too.
fn authenticate<'s>(
    sim: &'s Simulator,
    presented: &PresentedCredentials,
) -> Result<&'s ClientCredentials, ApiError> {
    let PresentedCredentials {
        id,
        secret,
        tried_basic,
    } = presented;
    // RFC 6749 §2.3.1: Basic credentials are form-encoded first; many clients skip that step,
    // so both forms are accepted.
    let decoded = if *tried_basic {
        form_decode(id).zip(form_decode(secret))
    } else {
        None
    };
    let failed = || {
        ApiError::invalid_client(
            "client authentication failed: unknown client id or wrong secret",
            *tried_basic,
        )
    };
    let client = sim
        .clients
        .get(id)
        .or_else(|| decoded.as_ref().and_then(|(id, _)| sim.clients.get(id)))
        .ok_or_else(failed)?;
    sim.rate_limit(&client.client_id)?;
    let secret_matches = secrets_equal(secret, &client.client_secret)
        || decoded
            .as_ref()
            .is_some_and(|(_, secret)| secrets_equal(secret, &client.client_secret));
    if !secret_matches {
        return Err(failed());
    }
    Ok(client)
}

/// The requested scopes the client may have (all of its scopes when none are requested); at
/// least one.
fn grant_scopes(client: &ClientCredentials, scope: Option<&str>) -> Result<Vec<String>, ApiError> {
    let requested = parse_scopes(scope);
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
    Ok(granted)
}

/// Issues an access token for the granted scopes and answers with it.
fn issue(sim: &Simulator, client: &ClientCredentials, granted: Vec<String>) -> Response {
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
    response
}
