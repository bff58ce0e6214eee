//! OAuth 2.0 client credentials (RFC 6749 §4.4) and bearer tokens (RFC 6750).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::signing::Keys;

/// A token's holder and what it may do.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
}

#[derive(Debug)]
struct IssuedToken {
    grant: Grant,
    expires: Instant,
    revoked: bool,
    /// Issue order, for evicting the oldest.
    seq: u64,
}

/// Why a bearer token was refused.
#[derive(Debug, PartialEq)]
pub(crate) enum TokenProblem {
    Unknown,
    Expired { ago: Duration },
    Revoked,
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenProblem::Unknown => {
                f.write_str("the access token is not recognised; obtain one from POST /oauth/token")
            }
            TokenProblem::Expired { ago } => write!(
                f,
                "the access token expired {:.1}s ago; obtain a new one from POST /oauth/token",
                ago.as_secs_f64()
            ),
            TokenProblem::Revoked => f.write_str(
                "the access token has been revoked; obtain a new one from POST /oauth/token",
            ),
        }
    }
}

/// Issued tokens, at most `max` of them. Expired ones are kept for a while so that their use is
/// answered "expired" rather than "unknown", and pruned as new ones are issued; when the store is
/// full, expired and revoked tokens go first, then the oldest valid ones.
#[derive(Debug)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, IssuedToken>,
    issued: u64,
    max: usize,
    /// Valid tokens forgotten because the store was full.
    evicted: u64,
}

/// Expired tokens are forgotten this long after they expire.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

impl TokenStore {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            tokens: HashMap::new(),
            issued: 0,
            max: max.max(1),
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Valid tokens forgotten so far because the store was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    pub(crate) fn issue(
        &mut self,
        keys: &Keys,
        grant: Grant,
        ttl: Duration,
        now: Instant,
    ) -> String {
        self.make_room(now);
        let token = keys.access_token(self.issued);
        let seq = self.issued;
        self.issued += 1;
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                grant,
                // Lifetimes are validated to at most 30 days, far from overflowing an Instant.
                expires: now.checked_add(ttl).unwrap_or(now),
                revoked: false,
                seq,
            },
        );
        token
    }

    /// Makes room for one more token.
    fn make_room(&mut self, now: Instant) {
        let full = self.tokens.len() >= self.max;
        if full || self.issued.is_multiple_of(256) {
            self.tokens
                .retain(|_, t| now.saturating_duration_since(t.expires) < FORGET_AFTER);
        }
        if self.tokens.len() >= self.max {
            // Tokens that can no longer be used go first.
            self.tokens.retain(|_, t| !t.revoked && now < t.expires);
        }
        if self.tokens.len() >= self.max {
            // Then the oldest valid ones, a tenth of the store at once so this stays rare.
            let keep = self.max - self.max.div_ceil(10);
            let mut by_age: Vec<(u64, String)> = self
                .tokens
                .iter()
                .map(|(token, t)| (t.seq, token.clone()))
                .collect();
            by_age.sort_unstable();
            let drop = by_age.len() - keep.min(by_age.len());
            for (_, token) in by_age.into_iter().take(drop) {
                self.tokens.remove(&token);
                self.evicted += 1;
            }
        }
    }

    pub(crate) fn check(&self, token: &str, now: Instant) -> Result<&Grant, TokenProblem> {
        let issued = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if issued.revoked {
            Err(TokenProblem::Revoked)
        } else if now >= issued.expires {
            Err(TokenProblem::Expired {
                ago: now.saturating_duration_since(issued.expires),
            })
        } else {
            Ok(&issued.grant)
        }
    }

    /// Revokes every token; returns how many were still valid.
    pub(crate) fn revoke_all(&mut self, now: Instant) -> usize {
        let mut revoked = 0;
        for token in self.tokens.values_mut() {
            if !token.revoked && now < token.expires {
                revoked += 1;
            }
            token.revoked = true;
        }
        revoked
    }
}

/// The parameters of a token request, from a form or a JSON body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenParams {
    pub(crate) grant_type: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) scope: Option<String>,
}

impl TokenParams {
    /// Parses `application/x-www-form-urlencoded`. A repeated parameter is an error (RFC 6749
    /// §3.2); unknown parameters are ignored.
    pub(crate) fn from_form(body: &[u8]) -> Result<Self, String> {
        let text =
            std::str::from_utf8(body).map_err(|_| "the form body is not UTF-8".to_string())?;
        let mut params = Self::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name =
                form_decode(name).ok_or_else(|| format!("malformed form parameter {name:?}"))?;
            let value = form_decode(value)
                .ok_or_else(|| format!("malformed value of form parameter {name:?}"))?;
            let slot = match name.as_str() {
                "grant_type" => &mut params.grant_type,
                "client_id" => &mut params.client_id,
                "client_secret" => &mut params.client_secret,
                "scope" => &mut params.scope,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(format!("form parameter {name} is given more than once"));
            }
        }
        Ok(params)
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); `None` when a
/// percent escape is malformed or the result is not UTF-8.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub(crate) use crate::text::base64_decode;

/// Client credentials from `Authorization: Basic`: `Ok(None)` without such a header.
pub(crate) fn basic_credentials(header: Option<&str>) -> Result<Option<(String, String)>, String> {
    let Some(value) = header else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64_decode(encoded.trim())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("the Basic credentials are not valid base64 of UTF-8 text")?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or("the Basic credentials must be client_id:client_secret")?;
    Ok(Some((id.to_string(), secret.to_string())))
}

/// Scopes of a `scope` parameter (space-delimited per RFC 6749 §3.3; commas accepted too).
pub(crate) fn parse_scopes(scope: Option<&str>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope
        .unwrap_or("")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
    {
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_string());
        }
    }
    scopes
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            (
                "test-client:test-secret",
                "dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=",
            ),
        ] {
            assert_eq!(
                base64_decode(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zg").unwrap(), b"f");
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Zg===").is_none());
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(basic_credentials(None), Ok(None));
        assert_eq!(basic_credentials(Some("Bearer abc")), Ok(None));
        assert_eq!(
            basic_credentials(Some("Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=")),
            Ok(Some(("test-client".into(), "test-secret".into())))
        );
        assert!(basic_credentials(Some("basic !!!")).is_err());
        assert!(
            basic_credentials(Some("Basic Zm9v"))
                .unwrap_err()
                .contains("client_id:")
        );
    }

    #[test]
    fn forms_decode_and_reject_repeats() {
        let p = TokenParams::from_form(
            b"grant_type=client_credentials&client_id=a%2Bb&scope=ai%3Atraining%3Aread+ai:skills:read&x=1",
        )
        .unwrap();
        assert_eq!(p.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(p.client_id.as_deref(), Some("a+b"));
        assert_eq!(p.scope.as_deref(), Some("ai:training:read ai:skills:read"));
        assert!(p.client_secret.is_none());
        assert!(
            TokenParams::from_form(b"scope=a&scope=b")
                .unwrap_err()
                .contains("more than once")
        );
        assert!(TokenParams::from_form(b"client_id=%zz").is_err());
        assert!(TokenParams::from_form(b"client_id=%e9").is_err());
    }

    #[test]
    fn scopes_and_secrets() {
        assert_eq!(parse_scopes(Some("a b,c  a")), vec!["a", "b", "c"]);
        assert!(parse_scopes(None).is_empty());
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
    }

    #[test]
    fn tokens_expire_and_are_revoked() {
        let keys = Keys::random();
        let mut store = TokenStore::new(100);
        let t0 = Instant::now();
        let grant = Grant {
            client_id: "c".into(),
            scopes: vec![],
        };
        let token = store.issue(&keys, grant, Duration::from_secs(10), t0);
        assert!(store.check(&token, t0).is_ok());
        assert!(matches!(
            store.check(&token, t0 + Duration::from_secs(11)),
            Err(TokenProblem::Expired { .. })
        ));
        assert_eq!(store.check("nope", t0).unwrap_err(), TokenProblem::Unknown);
        assert_eq!(store.revoke_all(t0), 1);
        assert_eq!(store.check(&token, t0).unwrap_err(), TokenProblem::Revoked);
    }

    #[test]
    fn the_store_is_bounded_and_drops_unusable_tokens_first() {
        let keys = Keys::random();
        let mut store = TokenStore::new(10);
        let t0 = Instant::now();
        let grant = || Grant {
            client_id: "c".into(),
            scopes: vec![],
        };
        let short: Vec<String> = (0..5)
            .map(|_| store.issue(&keys, grant(), Duration::from_secs(1), t0))
            .collect();
        let long: Vec<String> = (0..5)
            .map(|_| store.issue(&keys, grant(), Duration::from_secs(100), t0))
            .collect();
        assert_eq!(store.len(), 10);
        // Full: the five expired tokens make room; the valid ones stay.
        let t1 = t0 + Duration::from_secs(2);
        let fresh = store.issue(&keys, grant(), Duration::from_secs(100), t1);
        assert_eq!(store.len(), 6);
        assert_eq!(store.evicted(), 0);
        assert_eq!(
            store.check(&short[0], t1).unwrap_err(),
            TokenProblem::Unknown
        );
        assert!(long.iter().all(|t| store.check(t, t1).is_ok()));
        // Revoked tokens go next, before any valid one.
        store.revoke_all(t1);
        let after_revoke: Vec<String> = (0..4)
            .map(|_| store.issue(&keys, grant(), Duration::from_secs(100), t1))
            .collect();
        assert_eq!(store.len(), 10);
        let newest = store.issue(&keys, grant(), Duration::from_secs(100), t1);
        assert_eq!(store.len(), 5);
        assert_eq!(store.check(&fresh, t1).unwrap_err(), TokenProblem::Unknown);
        assert!(after_revoke.iter().all(|t| store.check(t, t1).is_ok()));
        // All valid: the oldest tenth is evicted, never the newest.
        for _ in 0..5 {
            store.issue(&keys, grant(), Duration::from_secs(100), t1);
        }
        assert_eq!(store.len(), 10);
        let last = store.issue(&keys, grant(), Duration::from_secs(100), t1);
        assert_eq!(store.len(), 10);
        assert_eq!(store.evicted(), 1);
        assert_eq!(
            store.check(&after_revoke[0], t1).unwrap_err(),
            TokenProblem::Unknown
        );
        assert!(store.check(&newest, t1).is_ok());
        assert!(store.check(&last, t1).is_ok());
        // However many are issued, the store never grows past its bound.
        for _ in 0..1000 {
            store.issue(&keys, grant(), Duration::from_secs(100), t1);
            assert!(store.len() <= 10);
        }
    }
}
