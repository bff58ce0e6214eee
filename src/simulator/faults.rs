//! Fault injection settings, changeable while the simulator runs (`PUT /_sim/faults`).

use serde::{Deserialize, Serialize};

/// Longest injected delay.
pub const MAX_SLOW_DELAY_MS: u64 = 10 * 60 * 1000;

/// How `Retry-After` is written on 429 responses (RFC 9110 §10.2.3 allows both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryAfterFormat {
    /// Whole seconds, at least 1.
    #[default]
    #[serde(rename = "seconds")]
    Seconds,
    /// An HTTP-date (IMF-fixdate).
    #[serde(rename = "httpDate")]
    HttpDate,
}

impl std::str::FromStr for RetryAfterFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seconds" => Ok(Self::Seconds),
            "httpDate" | "http-date" => Ok(Self::HttpDate),
            other => Err(format!(
                "unknown Retry-After format {other:?}; use \"seconds\" or \"http-date\""
            )),
        }
    }
}

/// Faults the simulator injects. Every rate is a probability in `[0, 1]`, drawn from the seeded
/// PRNG, so the same `--seed` and the same sequence of requests give the same faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of API requests answered 500 or 503 before anything else happens.
    pub fault_rate: f64,
    /// Fraction of job submissions that create the job and then answer 503, as if the response
    /// had been lost (what `Idempotency-Key` exists for).
    pub post_commit_fault_rate: f64,
    /// Fraction of API requests delayed by `slow_delay_ms` before they are answered.
    pub slow_rate: f64,
    /// Delay of slow responses, in milliseconds.
    pub slow_delay_ms: u64,
    /// Fraction of successful API responses whose JSON body is replaced by one with missing
    /// fields and wrong types.
    pub malformed_rate: f64,
    /// Fraction of jobs that fail partway through TRAINING (decided at submission).
    pub job_failure_rate: f64,
    /// Requests per second allowed per client (burst: one second's worth); `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    /// How `Retry-After` is written on 429 responses.
    pub retry_after_format: RetryAfterFormat,
    /// The next this many artifact downloads are refused as expired (403 `url_expired`), as if
    /// the signed URL had run out between the export and the download.
    pub expire_artifact_downloads: u32,
}

impl Faults {
    /// Checks every field's range; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("faultRate", self.fault_rate),
            ("postCommitFaultRate", self.post_commit_fault_rate),
            ("slowRate", self.slow_rate),
            ("malformedRate", self.malformed_rate),
            ("jobFailureRate", self.job_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "{name} is {value}; it must be a fraction between 0 and 1"
                ));
            }
        }
        if self.slow_delay_ms > MAX_SLOW_DELAY_MS {
            return Err(format!(
                "slowDelayMs is {}; it must be at most {MAX_SLOW_DELAY_MS} (10 minutes)",
                self.slow_delay_ms
            ));
        }
        if let Some(rate) = self.rate_limit_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!(
                "rateLimitPerSecond is {rate}; it must be a positive number (omit it for no limit)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_camel_case_and_strict() {
        let faults: Faults = serde_json::from_str(
            r#"{"faultRate":0.5,"rateLimitPerSecond":20,"retryAfterFormat":"httpDate"}"#,
        )
        .unwrap();
        assert_eq!(faults.fault_rate, 0.5);
        assert_eq!(faults.rate_limit_per_second, Some(20.0));
        assert_eq!(faults.retry_after_format, RetryAfterFormat::HttpDate);
        assert_eq!(faults.slow_rate, 0.0);
        let typo = serde_json::from_str::<Faults>(r#"{"faultrate":0.5}"#).unwrap_err();
        assert!(typo.to_string().contains("faultrate"), "{typo}");
    }

    #[test]
    fn ranges_are_checked() {
        let bad = Faults {
            slow_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.validate().unwrap_err().contains("slowRate"));
        let bad = Faults {
            rate_limit_per_second: Some(0.0),
            ..Faults::default()
        };
        assert!(bad.validate().unwrap_err().contains("rateLimitPerSecond"));
        let nan = Faults {
            fault_rate: f64::NAN,
            ..Faults::default()
        };
        assert!(nan.validate().is_err());
        assert!(Faults::default().validate().is_ok());
    }
}
