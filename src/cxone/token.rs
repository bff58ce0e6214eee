//! OAuth2 client-credentials tokens, cached and shared by every job that uses the same client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A secret string whose `Debug` never shows the value and which has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for putting on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Client credentials, with a version (the Secret's resourceVersion) so a rotated Secret gets a
/// new token instead of a cached one minted from the old secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub version: String,
}

/// What a token is cached under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub token_url: String,
    pub client_id: String,
    pub scopes: String,
    pub version: String,
}

#[derive(Clone)]
pub(crate) struct CachedToken {
    pub access_token: SecretString,
    /// When to stop using the token (expiry minus the refresh margin).
    pub refresh_at: Instant,
    /// Scopes the server said it granted, if it said.
    pub granted: Option<std::collections::BTreeSet<String>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Shared token cache. Cheap to clone. One refresh at a time per key (single flight): callers
/// that arrive while a token is being fetched wait for it instead of fetching their own.
#[derive(Clone, Default)]
pub struct TokenCache {
    slots: Arc<Mutex<HashMap<TokenKey, Slot>>>,
}

/// Refresh this long before a token expires (the guide's 60 s), or half the lifetime for tokens
/// shorter than two minutes.
pub(crate) fn refresh_margin(expires_in: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(60);
    if expires_in >= MARGIN * 2 {
        MARGIN
    } else {
        expires_in / 2
    }
}

/// Cached token slots kept before expired ones are dropped.
const PRUNE_ABOVE: usize = 256;

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() > PRUNE_ABOVE {
            let now = Instant::now();
            // Drop slots nobody is using whose token is gone or stale (e.g. rotated Secrets).
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map(|t| t.as_ref().is_some_and(|t| t.refresh_at > now))
                        .unwrap_or(true)
            });
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// Number of cached tokens (for tests and metrics).
    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_sixty_seconds_or_half_of_short_lifetimes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials {
            client_id: "id".into(),
            client_secret: SecretString::new("hunter2"),
            version: "1".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
