//! Authenticating to an OCI registry, without I/O: the `Authorization` headers, parsing a
//! `WWW-Authenticate` challenge, the token service's request and answer (the exchange itself is
//! in [`super::session`]). Imports the registry's shared types and [`super::reference`].

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::reference::OciTarget;
use crate::registry::{RegistryAuth, RegistryError, redact_url};

/// The request to the token service at `realm` for `scope`, with `auth`; refused when the
/// credentials would go over plain HTTP to a TLS registry's realm.
pub(super) fn token_request(
    http: &reqwest::Client,
    target: &OciTarget,
    auth: &RegistryAuth,
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
    let scheme_ok =
        realm_url.scheme() == "https" || (realm_url.scheme() == "http" && target.plain_http);
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
    Ok(match auth {
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
            http.post(realm_url).form(&form)
        }
        RegistryAuth::Basic { username, password } => {
            http.get(query_url).basic_auth(username, Some(password))
        }
        RegistryAuth::Anonymous => http.get(query_url),
    })
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
