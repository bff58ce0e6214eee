//! Authenticating to an OCI registry: the `Authorization` headers, parsing a `WWW-Authenticate`
//! challenge, and the token flow of a `Bearer` challenge. Imports `crate::http`, the registry's
//! shared types and [`super::session`].

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::{self, HeaderValue};
use serde::Deserialize;

use super::session::{Session, classify, error_detail};
use crate::http::{CALL_TIMEOUT, MAX_TOKEN_BODY, describe_transport};
use crate::registry::{RegistryAuth, RegistryError, read_answer, redact_url};
use crate::text::truncate_chars;

impl Session<'_> {
    /// Sets [`Self::authorization`] from a 401's `WWW-Authenticate` challenge.
    pub(super) async fn answer_challenge(
        &mut self,
        resp: &reqwest::Response,
        what: &str,
    ) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service } => Some((realm.clone(), service.clone())),
            Challenge::Basic => None,
        });
        if let Some((realm, service)) = bearer {
            let token = self.fetch_token(&realm, service.as_deref(), what).await?;
            self.authorization = Some(bearer_header(&token)?);
            return Ok(());
        }
        let basic = challenges.iter().any(|c| matches!(c, Challenge::Basic));
        match (basic, self.auth) {
            // Basic credentials were already sent with the refused request.
            (true, RegistryAuth::Basic { username, .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the password of user {:?} (HTTP 401)",
                truncate_chars(username, 64)
            ))),
            (true, RegistryAuth::Anonymous) => Err(RegistryError::Auth(format!(
                "{what}: the registry requires a user name and password (HTTP 401), and none were given"
            ))),
            (true, RegistryAuth::Bearer { .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the bearer token and asks for a user name and password (HTTP 401)"
            ))),
            (false, _) => Err(RegistryError::Auth(format!(
                "{what}: the registry answered HTTP 401 without a Basic or Bearer challenge"
            ))),
        }
    }

    /// The token flow of a `Bearer realm=…,service=…` challenge: GET the realm (with Basic
    /// credentials when configured), or exchange an identity token (OAuth2 refresh_token grant).
    pub(super) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        what: &str,
    ) -> Result<String, RegistryError> {
        let scope = format!("repository:{}:{}", self.target.repository, self.actions);
        let shown = redact_url(realm);
        let request = self.token_request(realm, service, &scope, what)?;
        let resp = request.timeout(CALL_TIMEOUT).send().await.map_err(|e| {
            RegistryError::Unreachable(format!(
                "{what}: token service {shown}: {}",
                describe_transport(e)
            ))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(classify(
                status,
                &format!("{what}: the token service {shown} refused to issue a token for {scope}"),
                &detail,
            ));
        }
        let body = read_answer(resp, MAX_TOKEN_BODY, what).await?;
        token_of(&body).map_err(|why| {
            RegistryError::Rejected(format!("{what}: the token service {shown} answered {why}"))
        })
    }

    /// The request to the token service at `realm` for `scope`, with this session's
    /// credentials; refused when they would go over plain HTTP to a TLS registry's realm.
    fn token_request(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        what: &str,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        let realm_url = Url::parse(realm).map_err(|_| {
            RegistryError::Rejected(format!(
                "{what}: the registry's token realm {} is not a URL",
                redact_url(realm)
            ))
        })?;
        // Credentials go to the token service only over HTTPS, unless the target itself is
        // plain HTTP (a loopback test registry).
        let scheme_ok = realm_url.scheme() == "https"
            || (realm_url.scheme() == "http" && self.target.plain_http);
        if !scheme_ok {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry's token realm {} is not HTTPS; credentials are not sent there",
                redact_url(realm)
            )));
        }
        let mut query_url = realm_url.clone();
        {
            let mut q = query_url.query_pairs_mut();
            q.append_pair("scope", scope);
            if let Some(service) = service {
                q.append_pair("service", service);
            }
        }
        Ok(match self.auth {
            RegistryAuth::Bearer { token } => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", "cxone-skill-operator"),
                    ("scope", scope),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                self.reg.http.post(realm_url).form(&form)
            }
            RegistryAuth::Basic { username, password } => self
                .reg
                .http
                .get(query_url)
                .basic_auth(username, Some(password)),
            RegistryAuth::Anonymous => self.reg.http.get(query_url),
        })
    }
}

/// The token in a token service's JSON answer (`token`, else `access_token`); `Err` says what
/// the answer was instead.
pub(super) fn token_of(body: &[u8]) -> Result<String, &'static str> {
    #[derive(Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| "no JSON token")?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("without a token")
}

pub(super) fn basic_header(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| RegistryError::Auth("the user name cannot be sent in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

pub(super) fn bearer_header(token: &str) -> Result<HeaderValue, RegistryError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        RegistryError::Auth("the bearer token has characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A `WWW-Authenticate` challenge we can answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`. Other schemes give `None`.
pub(super) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_auth_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `key="quoted \" value", key=token, …` → lowercase keys and unquoted values.
pub(super) fn parse_auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.insert(key.to_ascii_lowercase(), value);
    }
    out
}
