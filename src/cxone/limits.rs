//! Endpoint rules and guards on outbound CXone traffic: where a job's `spec.connection` points
//! (region or base URL, optional token URL), the allowlist it must pass, and the rate limiter
//! every call of every job shares (with the pause of endpoints that stop answering).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Base URLs a job may point at. Patterns are URLs whose host may contain `*` for one DNS label
/// (`https://api.*.cxone.com`); scheme, host and port must match, and a job's base URL may add
/// a path under the pattern's path.
#[derive(Clone, Debug)]
pub struct EndpointAllowlist {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    scheme: String,
    host_labels: Vec<String>,
    port: Option<u16>,
    path: String,
    text: String,
}

impl EndpointAllowlist {
    pub const DEFAULT: &'static str = "https://api.*.cxone.com";

    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                let url = reqwest::Url::parse(&p.replace('*', "wildcard-label"))
                    .map_err(|e| format!("allowed endpoint {p:?} is not a URL: {e}"))?;
                let host = url
                    .host_str()
                    .ok_or_else(|| format!("allowed endpoint {p:?} has no host"))?;
                Ok(Pattern {
                    scheme: url.scheme().to_string(),
                    host_labels: host
                        .split('.')
                        .map(|l| l.replace("wildcard-label", "*"))
                        .collect(),
                    port: url.port_or_known_default(),
                    path: url.path().trim_end_matches('/').to_string(),
                    text: p.to_string(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if patterns.is_empty() {
            return Err("the endpoint allowlist is empty".into());
        }
        Ok(Self { patterns })
    }

    /// Whether `url` (an API base or token URL) is allowed.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let labels: Vec<&str> = host.split('.').collect();
        self.patterns.iter().any(|p| {
            p.scheme == url.scheme()
                && p.port == url.port_or_known_default()
                && p.host_labels.len() == labels.len()
                && p.host_labels
                    .iter()
                    .zip(&labels)
                    .all(|(pat, l)| pat == "*" && !l.is_empty() || pat.eq_ignore_ascii_case(l))
                && (url.path().trim_end_matches('/') == p.path
                    || url.path().starts_with(&format!("{}/", p.path)))
        })
    }

    /// The endpoint, if both of its URLs are allowed; otherwise what to tell the user.
    pub fn check(&self, endpoint: super::Endpoint) -> Result<super::Endpoint, String> {
        for (field, url) in [
            ("baseUrl", endpoint.base_url()),
            ("tokenUrl", endpoint.token_url()),
        ] {
            if !self.allows(url) {
                return Err(format!(
                    "spec.connection.{field} {url} is not an allowed CXone endpoint (allowed: {}); ask the operator's administrators to allow it",
                    self.describe()
                ));
            }
        }
        Ok(endpoint)
    }

    /// The CXone endpoint a job's `spec.connection` names (exactly one of a region and a base
    /// URL, optionally a token URL), if this allowlist permits it.
    pub fn resolve(&self, c: &crate::crd::Connection) -> Result<super::Endpoint, String> {
        use super::Endpoint;
        let endpoint = match (&c.region, &c.base_url) {
            (Some(region), None) => Endpoint::for_region(region),
            (None, Some(base)) => Endpoint::new(base, c.token_url.as_deref()),
            _ => Err("set exactly one of region and baseUrl".to_string()),
        }
        .map_err(|e| format!("spec.connection: {e}"))?;
        let endpoint = match (&c.region, &c.token_url) {
            (Some(_), Some(token)) => Endpoint::new(endpoint.base_url().as_str(), Some(token))
                .map_err(|e| format!("spec.connection: {e}"))?,
            _ => endpoint,
        };
        self.check(endpoint)
    }

    pub fn describe(&self) -> String {
        self.patterns
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Token buckets per (endpoint, client id), shared by every job: never more than `rate` calls a
/// second to one CXone tenant, with a burst of a tenth of a second's worth, so no one-second window
/// (a restart with thousands of jobs included) sees more than 1.1 × the rate. Acquiring never sleeps: it says
/// how long to wait, and the caller requeues.
///
/// The limiter also learns from CXone: a 429 blocks the bucket for the `Retry-After` time (so
/// every job waits, not only the one that was told) and halves its rate (down to a quarter of
/// the configured rate), which then recovers by 5 % of the configured rate per second.
pub struct CxoneRateLimiter {
    /// Calls per second; `None`: no limit of our own (429s still block).
    rate: Option<f64>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
    /// Endpoints that stopped answering (timeouts, refused connections), by base URL.
    silent: Mutex<HashMap<String, Silence>>,
}

/// An endpoint that did not answer: no call goes there before `until`, then one call at a time
/// probes it until one gets an answer. Without this, jobs pointing at an endpoint that accepts
/// connections and never answers would hold the workers for a whole call timeout each, again and
/// again, and starve every other job.
struct Silence {
    strikes: u32,
    until: Instant,
}

/// First pause after an endpoint failed to answer; it doubles with every further failure.
const SILENCE_BASE: Duration = Duration::from_secs(15);
/// Longest pause.
const SILENCE_MAX: Duration = Duration::from_secs(300);
/// While one call probes a silent endpoint, the others wait this long (a call's longest timeout).
const PROBE_WINDOW: Duration = Duration::from_secs(45);

struct Bucket {
    tokens: f64,
    updated: Instant,
    factor: f64,
    blocked_until: Option<Instant>,
}

/// Calls allowed at once: a tenth of a second's worth, at least one.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

/// Lowest fraction of the configured rate that 429s can push the limiter down to.
const MIN_FACTOR: f64 = 0.25;
/// Longest wait a reservation hands out: the debt is capped there, so a rate lowered by 429s
/// cannot turn reservations already handed out into waits of many minutes.
const MAX_RESERVATION: Duration = Duration::from_secs(60);
/// Recovery of the rate factor per second without a 429.
const RECOVERY_PER_SECOND: f64 = 0.05;
/// Rate assumed after a 429 when no rate of our own is configured.
const UNLIMITED_FALLBACK_RATE: f64 = 100.0;

impl CxoneRateLimiter {
    /// `rate` calls per second; `None` or a non-positive value: no limit of our own.
    pub fn new(rate: Option<f64>) -> Self {
        Self {
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            buckets: Mutex::new(HashMap::new()),
            silent: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(
        &self,
        endpoint: &str,
        client_id: &str,
        f: impl FnOnce(&mut Bucket, f64, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let base = self.rate.unwrap_or(UNLIMITED_FALLBACK_RATE);
        let bucket = buckets
            .entry((endpoint.to_string(), client_id.to_string()))
            .or_insert(Bucket {
                tokens: burst(base),
                updated: now,
                factor: 1.0,
                blocked_until: None,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.factor = (bucket.factor + elapsed * RECOVERY_PER_SECOND).min(1.0);
        let rate = base * bucket.factor;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst(rate));
        bucket.updated = now;
        f(bucket, rate, now)
    }

    /// `endpoint` did not answer (timeout, connection failure): pause calls to it, longer with
    /// each failure in a row.
    pub fn unanswered(&self, endpoint: &str) {
        let now = Instant::now();
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        let s = silent.entry(endpoint.to_string()).or_insert(Silence {
            strikes: 0,
            until: now,
        });
        s.strikes = s.strikes.saturating_add(1);
        let pause = SILENCE_BASE.as_secs_f64() * 2f64.powi(s.strikes.min(16) as i32 - 1);
        s.until = now + Duration::from_secs_f64(pause).min(SILENCE_MAX);
    }

    /// `endpoint` answered (whatever it said): calls to it go through again.
    pub fn answered(&self, endpoint: &str) {
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        if !silent.is_empty() {
            silent.remove(endpoint);
        }
    }

    /// `Some(wait)` while `endpoint` is paused; once the pause is over, the first caller gets
    /// `None` (it probes) and the others wait for the probe.
    fn silence(&self, endpoint: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        let s = silent.get_mut(endpoint)?;
        if s.until > now {
            return Some(s.until - now);
        }
        s.until = now + PROBE_WINDOW;
        None
    }

    /// Reserves one call: `None` means call now; `Some(wait)` means the call has a slot `wait`
    /// from now (the bucket goes into debt for it), so callers that requeue for their slot come
    /// back once each instead of retrying in a tight loop.
    pub fn reserve(&self, endpoint: &str, client_id: &str) -> Option<Duration> {
        if let Some(wait) = self.silence(endpoint) {
            return Some(wait);
        }
        let limited = self.rate.is_some();
        self.with_bucket(endpoint, client_id, |b, rate, now| {
            let blocked = b.blocked_until.filter(|u| *u > now).map(|u| u - now);
            if blocked.is_none() {
                b.blocked_until = None;
                if !limited && b.factor >= 1.0 {
                    return None;
                }
            }
            b.tokens = (b.tokens - 1.0).max(-rate * MAX_RESERVATION.as_secs_f64());
            let debt = if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / rate)
            };
            let wait = debt.max(blocked.unwrap_or_default());
            (!wait.is_zero()).then_some(wait.max(Duration::from_millis(10)))
        })
    }

    /// CXone answered 429: block everyone on this bucket for `retry_after` and slow down.
    pub fn throttled(&self, endpoint: &str, client_id: &str, retry_after: Duration) {
        self.with_bucket(endpoint, client_id, |b, _, now| {
            b.factor = (b.factor * 0.5).max(MIN_FACTOR);
            b.tokens = b.tokens.min(0.0);
            let until = now + retry_after;
            b.blocked_until = Some(b.blocked_until.map_or(until, |u| u.max(until)));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn default_allowlist_allows_only_cxone_regions_over_https() {
        let a = EndpointAllowlist::parse(&[EndpointAllowlist::DEFAULT.to_string()]).unwrap();
        assert!(a.allows(&url("https://api.us2-01.cxone.com")));
        assert!(a.allows(&url("https://api.eu1.cxone.com/oauth/token")));
        assert!(!a.allows(&url("http://api.us2-01.cxone.com")));
        assert!(!a.allows(&url("https://api.evil.com")));
        assert!(!a.allows(&url("https://api.x.cxone.com.evil.com")));
        assert!(!a.allows(&url("https://api.a.b.cxone.com")));
        assert!(!a.allows(&url("https://api.us2-01.cxone.com:8443")));
        assert!(!a.allows(&url("https://evilcxone.com")));
    }

    #[test]
    fn explicit_patterns_with_port_and_path() {
        let a = EndpointAllowlist::parse(&[
            "http://127.0.0.1:8089".into(),
            "https://gw.example/cxone".into(),
        ])
        .unwrap();
        assert!(a.allows(&url("http://127.0.0.1:8089/")));
        assert!(!a.allows(&url("http://127.0.0.1:8090/")));
        assert!(a.allows(&url("https://gw.example/cxone/oauth/token")));
        assert!(!a.allows(&url("https://gw.example/cxone-evil")));
        assert!(EndpointAllowlist::parse(&[]).is_err());
        assert!(EndpointAllowlist::parse(&["not a url".into()]).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_everyone_and_halves_the_rate() {
        let l = CxoneRateLimiter::new(Some(100.0));
        assert_eq!(l.reserve("e", "c"), None);
        l.throttled("e", "c", Duration::from_secs(2));
        assert_eq!(l.reserve("e", "c"), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        // Rate now 100 × (0.5 + 2 s × 0.05) = 60/s, and the bucket refilled to its burst of 6.
        let mut immediate = 0;
        while l.reserve("e", "c").is_none() {
            immediate += 1;
        }
        assert_eq!(immediate, 6);
        let unlimited = CxoneRateLimiter::new(None);
        assert_eq!(unlimited.reserve("e", "c"), None);
        unlimited.throttled("e", "c", Duration::from_secs(1));
        assert!(
            unlimited.reserve("e", "c").is_some(),
            "429s block even without a local limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_has_a_floor_and_reservations_a_ceiling() {
        let l = CxoneRateLimiter::new(Some(10.0));
        for _ in 0..10 {
            l.throttled("e", "c", Duration::ZERO);
        }
        // Rate floor 2.5/s; however many callers queue, nobody is told to wait over a minute.
        let waits: Vec<Duration> = (0..1000).filter_map(|_| l.reserve("e", "c")).collect();
        assert!(
            waits.iter().all(|w| *w <= MAX_RESERVATION),
            "{:?}",
            waits.last()
        );
        assert_eq!(waits.last().copied(), Some(MAX_RESERVATION));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_endpoint_is_paused_then_probed_by_one_call() {
        let l = CxoneRateLimiter::new(None);
        assert_eq!(l.reserve("e", "c"), None);
        l.unanswered("e");
        assert_eq!(l.reserve("e", "c"), Some(SILENCE_BASE));
        assert_eq!(
            l.reserve("e", "other"),
            Some(SILENCE_BASE),
            "every client waits"
        );
        assert_eq!(
            l.reserve("f", "c"),
            None,
            "other endpoints are not affected"
        );
        tokio::time::advance(SILENCE_BASE).await;
        assert_eq!(l.reserve("e", "c"), None, "one probe");
        assert_eq!(
            l.reserve("e", "c"),
            Some(PROBE_WINDOW),
            "the others wait for it"
        );
        // The probe failed too: a longer pause.
        l.unanswered("e");
        assert_eq!(l.reserve("e", "c"), Some(SILENCE_BASE * 2));
        for _ in 0..20 {
            l.unanswered("e");
        }
        assert_eq!(l.reserve("e", "c"), Some(SILENCE_MAX));
        l.answered("e");
        assert_eq!(l.reserve("e", "c"), None, "an answer ends the pause");
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_hand_out_distinct_slots_per_client() {
        let l = CxoneRateLimiter::new(Some(20.0));
        // Burst of 2 (a tenth of a second), then one slot every 50 ms.
        assert_eq!(l.reserve("e", "c"), None);
        assert_eq!(l.reserve("e", "c"), None);
        assert_eq!(l.reserve("e", "c"), Some(Duration::from_millis(50)));
        assert_eq!(l.reserve("e", "c"), Some(Duration::from_millis(100)));
        assert_eq!(l.reserve("e", "other"), None, "buckets are per client");
        tokio::time::advance(Duration::from_millis(100)).await;
        // The two reserved slots are paid off; the next caller waits for a fresh token.
        assert_eq!(l.reserve("e", "c"), Some(Duration::from_millis(50)));
        assert_eq!(CxoneRateLimiter::new(None).reserve("e", "c"), None);
    }
}
