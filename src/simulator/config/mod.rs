//! Configuration of the simulator: [`SimulatorConfig`] and its validation, the `simulate`
//! command-line flags ([`SimulateArgs`]) and the parsers of their values (durations, sizes,
//! rates, client files). Imports the simulator's fault settings, the CXone scopes and
//! `crate::duration`; no I/O except reading the files the flags name.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::faults::{Faults, RetryAfterFormat};
use crate::cxone::model::TRAINING_SCOPES;
use crate::duration::parse_duration;

/// Longest accepted job duration, token lifetime or artifact URL lifetime.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// A client allowed to obtain tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// Scopes the client may be granted.
    pub scopes: Vec<String>,
}

impl ClientCredentials {
    /// A client allowed every scope of the training API.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: TRAINING_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

// The secret never appears in logs or panic messages.
impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Who may use the `/_sim/*` admin endpoints (stats, faults, token revocation). The signed
/// artifact downloads under `/_sim/artifacts/` carry their own authorisation and are not affected.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum AdminAccess {
    /// The admin endpoints answer 403 (the default).
    #[default]
    Disabled,
    /// Requests must carry `Authorization: Bearer <token>`.
    Token(String),
    /// No authentication: for test setups on a loopback address only.
    Open,
}

// The token never appears in logs or panic messages.
impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAccess::Disabled => f.write_str("Disabled"),
            AdminAccess::Token(_) => f.write_str("Token(<redacted>)"),
            AdminAccess::Open => f.write_str("Open"),
        }
    }
}

/// Shortest accepted admin token.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// Default of `--max-jobs`.
pub const DEFAULT_MAX_JOBS: usize = 10_000;
/// Default of `--max-tokens`.
pub const DEFAULT_MAX_TOKENS: usize = 10_000;
/// Default of `--max-request-bytes`: 2 MiB (some 20,000 utterances). Parsing, validating and
/// training a submission takes up to about twenty times its size when nearly every utterance
/// brings new words, and submissions are admitted so that at most this many body bytes are
/// processed at once.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// Default of `--max-job-memory`: 32 MiB for the models and evaluations of the kept jobs. With
/// one largest submission in flight, the process itself and the allocator's fragmentation, the
/// simulator stays inside the Helm chart's 128Mi memory limit (measured: a peak of about 95 MB
/// after 25 submissions of 2 MiB whose every utterance has words of its own).
pub const DEFAULT_MAX_JOB_MEMORY: usize = 32 * 1024 * 1024;
/// Largest `--artifact-weights-bytes`: 16 GiB.
pub const MAX_ARTIFACT_WEIGHTS_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Bounds of `--max-request-bytes`.
pub const MIN_REQUEST_BYTES: usize = 1024;
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024 * 1024;

/// Everything the simulator needs to run.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    pub clients: Vec<ClientCredentials>,
    /// Time from submission to COMPLETED.
    pub job_duration: Duration,
    pub token_ttl: Duration,
    /// Lifetime of the signed artifact URLs.
    pub artifact_ttl: Duration,
    /// Faults in force at startup.
    pub faults: Faults,
    /// Seed of the PRNG behind fault injection and job failures.
    pub seed: u64,
    /// Base of the artifact URLs (e.g. `https://cxone-sim.example`); without it the request's
    /// `Host` header is used.
    pub public_url: Option<String>,
    /// Largest class imbalance a submission may have.
    pub max_class_imbalance_ratio: f64,
    /// Who may use the `/_sim/*` admin endpoints.
    pub admin: AdminAccess,
    /// Most jobs kept; beyond it the oldest finished jobs (and their idempotency keys) are
    /// forgotten, and a submission is answered 503 while every kept job is still running.
    pub max_jobs: usize,
    /// Most access tokens kept; beyond it expired and revoked tokens are forgotten, then the
    /// oldest ones.
    pub max_tokens: usize,
    /// Largest request body; a larger submission is answered 413.
    pub max_request_bytes: usize,
    /// About how much memory the kept jobs' models and evaluations may take; beyond it the
    /// oldest finished jobs are forgotten, as with `max_jobs`.
    pub max_job_memory: usize,
    /// When set, the weights artifact is exactly this many bytes of deterministic content derived
    /// from the job id, streamed without being held in memory (for registry copy tests and
    /// benchmarks). When unset, it is the trained model's JSON.
    pub artifact_weights_bytes: Option<u64>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            clients: vec![ClientCredentials::new("test-client", "test-secret")],
            job_duration: Duration::from_secs(1),
            token_ttl: Duration::from_secs(3600),
            artifact_ttl: Duration::from_secs(3600),
            faults: Faults::default(),
            seed: 0,
            public_url: None,
            max_class_imbalance_ratio: 3.0,
            admin: AdminAccess::Disabled,
            max_jobs: DEFAULT_MAX_JOBS,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_job_memory: DEFAULT_MAX_JOB_MEMORY,
            artifact_weights_bytes: None,
        }
    }
}

impl SimulatorConfig {
    /// Checks the whole configuration; the message says which setting is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        self.check_clients()?;
        self.check_durations()?;
        if !(self.max_class_imbalance_ratio.is_finite() && self.max_class_imbalance_ratio >= 1.0) {
            return Err(format!(
                "max class imbalance ratio {} must be a number of at least 1",
                self.max_class_imbalance_ratio
            ));
        }
        if let Some(url) = &self.public_url {
            check_public_url(url)?;
        }
        if let AdminAccess::Token(token) = &self.admin
            && token.chars().count() < MIN_ADMIN_TOKEN_CHARS
        {
            return Err(format!(
                "the admin token must have at least {MIN_ADMIN_TOKEN_CHARS} characters"
            ));
        }
        self.check_capacity()?;
        self.faults.validate()
    }

    /// At least one client; each with an id, a secret and scopes; no id twice.
    fn check_clients(&self) -> Result<(), String> {
        if self.clients.is_empty() {
            return Err(NO_CLIENT.to_string());
        }
        let mut seen = HashSet::new();
        for client in &self.clients {
            if client.client_id.is_empty() || client.client_secret.is_empty() {
                return Err(format!(
                    "client {:?}: client id and secret must not be empty",
                    client.client_id
                ));
            }
            if !seen.insert(client.client_id.as_str()) {
                return Err(format!(
                    "client id {:?} is configured twice",
                    client.client_id
                ));
            }
            if client.scopes.is_empty() {
                return Err(format!("client {:?} has no scopes", client.client_id));
            }
        }
        Ok(())
    }

    /// Durations at most 30 days; tokens and artifact URLs live longer than 0.
    fn check_durations(&self) -> Result<(), String> {
        for (name, value) in [
            ("job duration", self.job_duration),
            ("token TTL", self.token_ttl),
            ("artifact TTL", self.artifact_ttl),
        ] {
            if value > MAX_DURATION {
                return Err(format!(
                    "{name} {value:?} is longer than the maximum of 30 days"
                ));
            }
        }
        if self.token_ttl.is_zero() {
            return Err("token TTL must be longer than 0".into());
        }
        if self.artifact_ttl.is_zero() {
            return Err("artifact TTL must be longer than 0".into());
        }
        Ok(())
    }

    /// The limits on stored jobs and tokens, request bodies, artifact sizes and job memory.
    fn check_capacity(&self) -> Result<(), String> {
        if self.max_jobs == 0 {
            return Err("max jobs must be at least 1".into());
        }
        if self.max_tokens == 0 {
            return Err("max tokens must be at least 1".into());
        }
        if !(MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(format!(
                "max request bytes {} must be between 1KiB and 1GiB",
                self.max_request_bytes
            ));
        }
        if let Some(n) = self.artifact_weights_bytes
            && !(1..=MAX_ARTIFACT_WEIGHTS_BYTES).contains(&n)
        {
            return Err(format!(
                "artifact weights bytes {n} must be between 1 byte and 16GiB"
            ));
        }
        if self.max_job_memory < MIN_REQUEST_BYTES {
            return Err(format!(
                "max job memory {} must be at least 1KiB",
                self.max_job_memory
            ));
        }
        Ok(())
    }
}

const NO_CLIENT: &str = "no API client is configured: pass --client-id ID --client-secret SECRET \
    (repeatable, paired in order) or --clients-file PATH (lines id:secret[:scope,scope,...])";

/// `cxone-skill-operator simulate`: a stateful simulator of the CXone AI training API.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8089",
        env = "CXONE_SIM_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Client id allowed to obtain tokens (with every scope); repeatable, paired in order with
    /// --client-secret.
    #[arg(long = "client-id", value_name = "ID", env = "CXONE_SIM_CLIENT_ID")]
    pub client_ids: Vec<String>,

    /// Secret of the client id in the same position.
    #[arg(
        long = "client-secret",
        value_name = "SECRET",
        env = "CXONE_SIM_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secrets: Vec<String>,

    /// File of clients, one per line: `id:secret[:scope,scope,...]` (all scopes when omitted);
    /// blank lines and lines starting with `#` are ignored.
    #[arg(long, value_name = "PATH", env = "CXONE_SIM_CLIENTS_FILE")]
    pub clients_file: Option<PathBuf>,

    /// Time a job takes from submission to COMPLETED (e.g. 30s, 2m).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration_arg)]
    pub job_duration: Duration,

    /// Lifetime of access tokens.
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = duration_arg)]
    pub token_ttl: Duration,

    /// Lifetime of the signed artifact URLs.
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = duration_arg)]
    pub artifact_ttl: Duration,

    /// Requests per client allowed per second (`20/s`, `20`, `600/m`); 429 with Retry-After
    /// beyond that. No limit when omitted.
    #[arg(long, value_name = "N/s", value_parser = rate_arg)]
    pub rate_limit: Option<f64>,

    /// Format of Retry-After on 429: `seconds` or `http-date`.
    #[arg(long, value_name = "FORMAT", default_value = "seconds")]
    pub retry_after_format: RetryAfterFormat,

    /// Fraction of API requests answered 500/503 before anything else happens.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction_arg)]
    pub fault_rate: f64,

    /// Fraction of submissions that create the job and then answer 503 (a lost response).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction_arg)]
    pub post_commit_fault_rate: f64,

    /// Fraction of successful API responses given a malformed JSON body.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction_arg)]
    pub malformed_rate: f64,

    /// Fraction of jobs that fail partway through training.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction_arg)]
    pub job_failure_rate: f64,

    /// Fraction of API requests delayed by --slow-delay.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction_arg)]
    pub slow_rate: f64,

    /// Delay of slow responses.
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = duration_arg)]
    pub slow_delay: Duration,

    /// Seed of fault injection and job failures: the same seed and requests give the same faults.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Base URL of the artifact links (default: from the request's Host header).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Largest class imbalance (biggest class / smallest class) a submission may have.
    #[arg(long, value_name = "R", default_value_t = 3.0)]
    pub max_class_imbalance_ratio: f64,

    /// Enable the /_sim/* admin endpoints (stats, faults, token revocation) for requests with
    /// `Authorization: Bearer <token>`, the token being this file's content (surrounding
    /// whitespace ignored, at least 16 characters). Without this or --admin-open they answer 403.
    #[arg(
        long,
        value_name = "PATH",
        env = "CXONE_SIM_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_open"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// Enable the /_sim/* admin endpoints without authentication; only with a loopback --listen
    /// address (test setups).
    #[arg(long)]
    pub admin_open: bool,

    /// Most jobs kept: beyond it the oldest finished jobs are forgotten (with their
    /// Idempotency-Keys), and a submission is answered 503 while all kept jobs still run.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_JOBS)]
    pub max_jobs: usize,

    /// Most access tokens kept: beyond it expired and revoked ones are forgotten, then the
    /// oldest (whose next use is answered 401).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,

    /// Largest request body (`2MiB`, `512KiB`, `1048576`); a larger submission is answered 413
    /// without being read to the end.
    #[arg(long, value_name = "SIZE", default_value = "2MiB", value_parser = size_arg)]
    pub max_request_bytes: usize,

    /// Memory the kept jobs' models and evaluations may take (about): beyond it the oldest
    /// finished jobs are forgotten, and a submission is answered 503 while the running ones
    /// take it all.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = size_arg)]
    pub max_job_memory: usize,

    /// Serve the weights artifact as exactly N bytes (`268435456`, `256MiB`) of deterministic
    /// content derived from the job id, streamed, instead of the trained model's JSON: for
    /// registry copy tests and benchmarks. Off by default.
    #[arg(long, value_name = "N", value_parser = artifact_size_arg)]
    pub artifact_weights_bytes: Option<u64>,
}

impl SimulateArgs {
    /// Resolves the clients (flags and file) and checks every setting.
    pub fn into_config(self) -> anyhow::Result<SimulatorConfig> {
        if self.client_ids.len() != self.client_secrets.len() {
            bail!(
                "{} --client-id but {} --client-secret given; pass them in pairs, one secret per id, in the same order",
                self.client_ids.len(),
                self.client_secrets.len()
            );
        }
        let mut clients: Vec<ClientCredentials> = self
            .client_ids
            .into_iter()
            .zip(self.client_secrets)
            .map(|(id, secret)| ClientCredentials::new(id, secret))
            .collect();
        if let Some(path) = &self.clients_file {
            clients.extend(read_clients_file(path)?);
        }
        if clients.is_empty() {
            bail!(NO_CLIENT);
        }
        let admin = match (&self.admin_token_file, self.admin_open) {
            (Some(path), _) => AdminAccess::Token(read_admin_token(path)?),
            (None, true) if !self.listen.ip().is_loopback() => bail!(
                "--admin-open leaves the /_sim/* admin endpoints without authentication and is only allowed with a loopback --listen address (got {}); use --admin-token-file PATH instead",
                self.listen
            ),
            (None, true) => AdminAccess::Open,
            (None, false) => AdminAccess::Disabled,
        };
        let slow_delay_ms = u64::try_from(self.slow_delay.as_millis()).unwrap_or(u64::MAX);
        let config = SimulatorConfig {
            clients,
            job_duration: self.job_duration,
            token_ttl: self.token_ttl,
            artifact_ttl: self.artifact_ttl,
            faults: Faults {
                fault_rate: self.fault_rate,
                post_commit_fault_rate: self.post_commit_fault_rate,
                slow_rate: self.slow_rate,
                slow_delay_ms,
                malformed_rate: self.malformed_rate,
                job_failure_rate: self.job_failure_rate,
                rate_limit_per_second: self.rate_limit,
                retry_after_format: self.retry_after_format,
                expire_artifact_downloads: 0,
            },
            seed: self.seed,
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_string()),
            max_class_imbalance_ratio: self.max_class_imbalance_ratio,
            admin,
            max_jobs: self.max_jobs,
            max_tokens: self.max_tokens,
            max_request_bytes: self.max_request_bytes,
            max_job_memory: self.max_job_memory,
            artifact_weights_bytes: self.artifact_weights_bytes,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

fn read_admin_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin token file {}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        bail!(
            "admin token file {}: the token must have at least {MIN_ADMIN_TOKEN_CHARS} characters",
            path.display()
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "admin token file {}: the token must be one line without spaces",
            path.display()
        );
    }
    Ok(token.to_string())
}

fn read_clients_file(path: &Path) -> anyhow::Result<Vec<ClientCredentials>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read clients file {}", path.display()))?;
    parse_clients(&text).map_err(|e| anyhow::anyhow!("clients file {}: {e}", path.display()))
}

/// Parses `id:secret[:scope,scope,...]` lines.
pub(crate) fn parse_clients(text: &str) -> Result<Vec<ClientCredentials>, String> {
    let mut clients = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let id = parts.next().unwrap_or("").trim();
        let secret = parts.next().map(str::trim);
        let scopes = parts.next();
        let Some(secret) = secret.filter(|s| !s.is_empty() && !id.is_empty()) else {
            return Err(format!(
                "line {line_no}: expected id:secret[:scope,scope,...] with a non-empty id and secret"
            ));
        };
        let mut client = ClientCredentials::new(id, secret);
        if let Some(scopes) = scopes {
            let listed: Vec<String> = scopes
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if listed.is_empty() {
                return Err(format!(
                    "line {line_no}: the scope list after the secret is empty; list scopes or drop the last ':'"
                ));
            }
            if let Some(unknown) = listed
                .iter()
                .find(|s| !TRAINING_SCOPES.contains(&s.as_str()))
            {
                return Err(format!(
                    "line {line_no}: unknown scope {unknown:?}; known scopes are {}",
                    TRAINING_SCOPES.join(", ")
                ));
            }
            client.scopes = listed;
        }
        clients.push(client);
    }
    Ok(clients)
}

fn check_public_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("public URL {url:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || url.contains(['?', '#', ' ']) {
        return Err(format!(
            "public URL {url:?} must be a base URL like https://host[:port][/path], without query or fragment"
        ));
    }
    Ok(())
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_DURATION {
        return Err(format!("{s} is longer than the maximum of 30 days"));
    }
    Ok(d)
}

/// `16MiB`, `512KiB`, `1048576` (bytes) → bytes.
pub(crate) fn size_arg(s: &str) -> Result<usize, String> {
    let n = parse_size(s, "16MiB", "16MiB, 512KiB or 1048576")?;
    match usize::try_from(n) {
        Ok(n) if (MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES).contains(&n) => Ok(n),
        _ => Err(format!("{s} is outside 1KiB-1GiB")),
    }
}

/// `256MiB`, `268435456` (bytes) → bytes, 1 byte to 16 GiB.
pub(crate) fn artifact_size_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s, "256MiB", "268435456 or 256MiB")?;
    if !(1..=MAX_ARTIFACT_WEIGHTS_BYTES).contains(&n) {
        return Err(format!("{s} is outside 1 byte-16GiB"));
    }
    Ok(n)
}

/// Digits and an optional binary unit (B, KiB, MiB, GiB, case-insensitive, `i` and `b`
/// optional) → bytes; `unit_example` and `examples` complete the error messages.
fn parse_size(s: &str, unit_example: &str, examples: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use bytes, KiB, MiB or GiB (e.g. {unit_example})"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{s:?} is not a size; use e.g. {examples}"))
}

fn fraction_arg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a fraction between 0 and 1 (e.g. 0.05)"
        )),
    }
}

/// `20/s`, `20`, `600/m`, `3600/h` → requests per second.
pub(crate) fn rate_arg(s: &str) -> Result<f64, String> {
    let (count, per) = match s.trim().split_once('/') {
        Some((count, unit)) => {
            let per = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                other => {
                    return Err(format!(
                        "unknown rate unit {other:?} in {s:?}; use N/s, N/m or N/h"
                    ));
                }
            };
            (count, per)
        }
        None => (s, 1.0),
    };
    match count.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / per),
        _ => Err(format!(
            "{s:?} is not a rate; use a positive number of requests such as 20/s"
        )),
    }
}

#[cfg(test)]
mod tests;
