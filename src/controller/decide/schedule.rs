//! When to look again: the poll schedule, the error backoff, and when artifact URLs are
//! refreshed. Pure: every function of its arguments (including `now`).

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::SkillTrainingJobSpec;

/// Default refresh margin before artifact URLs expire.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The poll schedule of a running CXone job: start at `initial`, multiply by `multiplier` after
/// each poll, never above `max` (docs/cxone-api.md: 2 s, ×1.5, 30 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollSchedule {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            multiplier: 1.5,
            max: Duration::from_secs(30),
        }
    }
}

impl PollSchedule {
    /// CXone must never be polled faster than every 2 s.
    pub const FLOOR: Duration = Duration::from_secs(2);

    pub fn from_spec(spec: &SkillTrainingJobSpec) -> Self {
        let d = Self::default();
        let Some(p) = &spec.polling else { return d };
        let initial = p
            .initial_interval_seconds
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(d.initial)
            .max(Self::FLOOR);
        let max = p
            .max_interval_seconds
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(d.max)
            .max(initial);
        let multiplier = p
            .multiplier
            .filter(|m| m.is_finite() && *m >= 1.0)
            .unwrap_or(d.multiplier);
        Self {
            initial,
            multiplier,
            max,
        }
    }

    /// Interval before poll number `attempt` (0-based) after the previous one.
    pub fn interval(&self, attempt: u32) -> Duration {
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64())).max(Self::FLOOR)
    }

    /// Polls this schedule needs to notice completion of a job lasting `job`: the smallest n
    /// with interval(0) + … + interval(n-1) ≥ job, plus the submission itself not counted.
    pub fn polls_needed(&self, job: Duration) -> u32 {
        let mut elapsed = Duration::ZERO;
        let mut n = 0;
        while elapsed < job && n < 1_000_000 {
            elapsed += self.interval(n);
            n += 1;
        }
        n
    }
}

/// Capped exponential backoff with jitter for errors: base × 2^attempt, at most `max`, then
/// scaled into [50 %, 100 %] by `jitter` (a value in [0, 1) from the caller's randomness).
pub fn error_backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
    let capped = exp.min(max.as_secs_f64());
    let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(capped * factor).max(Duration::from_millis(100))
}

/// Whether a progress change alone (same phase) is worth a status write: never with `step` 0
/// (progress moves with phase changes only); otherwise in steps of at least `step` points.
pub fn progress_worth_writing(old: Option<i32>, new: i32, step: i32) -> bool {
    if step <= 0 {
        return false;
    }
    match old {
        None => true,
        Some(old) => new == 100 || (new - old).abs() >= step,
    }
}

/// When artifact URLs expiring at `expires_at` should be refreshed, relative to `now`
/// (zero: now).
pub fn refresh_in(expires_at: Timestamp, refresh_before: Duration, now: Timestamp) -> Duration {
    let refresh_at = expires_at.as_second() - refresh_before.as_secs() as i64;
    let wait = refresh_at - now.as_second();
    Duration::from_secs(wait.max(0) as u64)
}

/// Shortest wait between two artifact refreshes: URLs that CXone hands out already expired, or a
/// skewed clock, must not make a job export every second.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(30);

/// Time until artifact URLs expiring at `expires_at` need refreshing. URLs that live shorter than
/// twice the margin are refreshed at half their remaining life; never sooner than
/// [`REFRESH_FLOOR`].
pub fn refresh_wait(refresh_before: Duration, expires_at: Timestamp, now: Timestamp) -> Duration {
    let remaining = Duration::from_secs((expires_at.as_second() - now.as_second()).max(0) as u64);
    let margin = refresh_before.min(remaining / 2);
    refresh_in(expires_at, margin, now).max(REFRESH_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_schedule_follows_the_guide() {
        let s = PollSchedule::default();
        let secs: Vec<f64> = (0..8).map(|i| s.interval(i).as_secs_f64()).collect();
        assert_eq!(
            secs,
            vec![2.0, 3.0, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30.0]
        );
        assert_eq!(s.interval(1000), Duration::from_secs(30));
        // 5 minutes: 2+3+4.5+6.75+10.125+15.1875+22.78125 = 64.34375, then 30 s steps.
        assert_eq!(s.polls_needed(Duration::from_secs(300)), 7 + 8);
        assert_eq!(s.polls_needed(Duration::ZERO), 0);
    }

    #[test]
    fn poll_schedule_from_spec_respects_the_floor() {
        let mut spec: SkillTrainingJobSpec = serde_json::from_value(serde_json::json!({
            "skillId": "s", "connection": {"region": "r", "credentialsSecretRef": {"name": "c"}},
            "language": "en", "labels": [{"id": "a", "name": "A"}],
            "polling": {"initialIntervalSeconds": 1, "multiplier": 0.5, "maxIntervalSeconds": 1}
        }))
        .unwrap();
        let s = PollSchedule::from_spec(&spec);
        assert_eq!(s.initial, Duration::from_secs(2));
        assert_eq!(s.max, Duration::from_secs(2));
        assert_eq!(s.multiplier, 1.5);
        spec.polling = None;
        assert_eq!(PollSchedule::from_spec(&spec), PollSchedule::default());
    }

    #[test]
    fn error_backoff_is_capped_and_jittered() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(error_backoff(0, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(error_backoff(0, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(error_backoff(3, base, max, 1.0), Duration::from_secs(8));
        assert_eq!(error_backoff(20, base, max, 1.0), max);
        assert_eq!(error_backoff(20, base, max, 0.0), max / 2);
    }

    #[test]
    fn progress_writes_are_bounded() {
        assert!(
            !progress_worth_writing(Some(3), 90, 0),
            "0: phase changes only"
        );
        assert!(progress_worth_writing(None, 3, 25));
        assert!(!progress_worth_writing(Some(3), 20, 25));
        assert!(progress_worth_writing(Some(3), 28, 25));
        assert!(progress_worth_writing(Some(90), 100, 25));
    }

    #[test]
    fn refresh_time_is_before_expiry() {
        let now = Timestamp::from_second(10_000).unwrap();
        let exp = Timestamp::from_second(13_600).unwrap();
        assert_eq!(
            refresh_in(exp, Duration::from_secs(300), now),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_in(now, Duration::from_secs(300), now),
            Duration::ZERO
        );
    }

    #[test]
    fn artifact_refresh_never_storms() {
        let now = Timestamp::from_second(10_000).unwrap();
        let margin = Duration::from_secs(300);
        let at = |s: i64| Timestamp::from_second(10_000 + s).unwrap();
        assert_eq!(
            refresh_wait(margin, at(3600), now),
            Duration::from_secs(3300)
        );
        // Short-lived URLs: half their life.
        assert_eq!(refresh_wait(margin, at(400), now), Duration::from_secs(200));
        // Already expired, about to expire, or a skewed clock: the floor, not a second.
        for s in [-3600, -1, 0, 1, 10, 59] {
            assert_eq!(refresh_wait(margin, at(s), now), REFRESH_FLOOR, "{s}");
        }
    }
}
