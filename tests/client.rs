//! The CXone client against the simulator over real HTTP on loopback.

use std::sync::Arc;
use std::time::Duration;

use cxone_skill_operator::cxone::model::{JobState, Utterance};
use cxone_skill_operator::cxone::{
    AuthProblem, CancelOutcome, ClientConfig, Credentials, CxoneClient, CxoneError, Endpoint,
    SecretString, Target, Transient,
};
use cxone_skill_operator::evaluation::{EvaluationOptions, analyze};
use cxone_skill_operator::simulator::{
    self, ClientCredentials, Faults, RetryAfterFormat, SimulatorConfig, SimulatorHandle,
};
use cxone_skill_operator::testkit::guide_request;

struct Fixture {
    sim: SimulatorHandle,
    endpoint: Endpoint,
    creds: Credentials,
    client: CxoneClient,
}

impl Fixture {
    async fn start(config: SimulatorConfig) -> Self {
        Self::with_client_config(config, ClientConfig::default()).await
    }

    async fn with_client_config(config: SimulatorConfig, client_config: ClientConfig) -> Self {
        let client_id = config.clients[0].client_id.clone();
        let secret = config.clients[0].client_secret.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = simulator::spawn(config, listener).await.unwrap();
        let endpoint = Endpoint::new(&sim.base_url(), None).unwrap();
        Self {
            sim,
            endpoint,
            creds: Credentials {
                client_id,
                client_secret: SecretString::new(secret),
                version: "1".into(),
            },
            client: CxoneClient::new(client_config).unwrap(),
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            endpoint: &self.endpoint,
            credentials: &self.creds,
        }
    }

    async fn submit(&self, key: &str) -> String {
        self.client
            .submit(self.target(), &guide_request(), key)
            .await
            .unwrap()
            .job_id
    }

    /// Polls until the job is terminal (the simulator's clock runs in real time).
    async fn wait_terminal(&self, job_id: &str) -> JobState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.client.status(self.target(), job_id).await.unwrap();
            if s.status.is_terminal() {
                return s.status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job_id} stuck in {}",
                s.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn full_flow_submit_poll_evaluate_export() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("run-1").await;
    assert_eq!(f.wait_terminal(&job).await, JobState::Completed);
    let eval = f.client.evaluation(f.target(), &job).await.unwrap();
    assert_eq!(eval.actuals.len(), 3, "one validation example per label");
    let report = analyze(&eval, &EvaluationOptions::default()).unwrap();
    assert_eq!(
        report.server_comparison.consistent,
        Some(true),
        "{:?}",
        report.server_comparison
    );
    let export = f.client.export(f.target(), &job).await.unwrap();
    assert!(export.expires_at > jiff::Timestamp::now());
    let body = reqwest::get(&export.artifacts.model_weights_url)
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    let stats = f.sim.stats();
    assert_eq!(stats.tokens_issued, 1, "one token for the whole flow");
    assert_eq!(stats.jobs_created, 1);
}

#[tokio::test]
async fn token_is_cached_and_fetched_once_under_concurrency() {
    let f = Arc::new(Fixture::start(SimulatorConfig::default()).await);
    let job = f.submit("cache-1").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let f = f.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            f.client.status(f.target(), &job).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = f.sim.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.count("status", 200), 20);
    assert_eq!(stats.count("token", 200), 1);
}

#[tokio::test]
async fn single_flight_refresh_on_a_cold_cache() {
    let f = Arc::new(Fixture::start(SimulatorConfig::default()).await);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let f = f.clone();
        tasks.push(tokio::spawn(
            async move { f.submit(&format!("sf-{i}")).await },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        f.sim.stats().tokens_issued,
        1,
        "concurrent callers share one token request"
    );
}

#[tokio::test]
async fn rotated_credentials_get_a_new_token() {
    let mut f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("rot-1").await;
    f.creds.version = "2".into();
    f.client.status(f.target(), &job).await.unwrap();
    assert_eq!(f.sim.stats().tokens_issued, 2);
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry() {
    // A 2 s token is refreshed after 1 s (half its life), so no call ever meets a 401.
    let config = SimulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..SimulatorConfig::default()
    };
    let f = Fixture::start(config).await;
    let job = f.submit("exp-1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.sim.stats().tokens_issued < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "token never refreshed"
        );
        f.client.status(f.target(), &job).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.sim.stats().count("status", 401), 0);
}

#[tokio::test]
async fn revoked_token_401_is_retried_once_with_a_fresh_token() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("rev-1").await;
    f.sim.revoke_tokens();
    let s = f.client.status(f.target(), &job).await.unwrap();
    assert_eq!(s.job_id, job);
    let stats = f.sim.stats();
    assert_eq!(stats.count("status", 401), 1);
    assert_eq!(stats.count("status", 200), 1);
    assert_eq!(stats.tokens_issued, 2);
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_naming_the_credentials() {
    let mut f = Fixture::start(SimulatorConfig::default()).await;
    f.creds.client_secret = SecretString::new("not-the-secret");
    let err = f.client.status(f.target(), "job-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::Auth {
                problem: AuthProblem::InvalidClient,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("client id or secret"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn missing_scope_is_reported_as_such() {
    let mut client = ClientCredentials::new("reader", "reader-secret");
    client.scopes = vec!["ai:training:read".into()];
    let config = SimulatorConfig {
        clients: vec![client],
        ..SimulatorConfig::default()
    };
    let f = Fixture::start(config).await;
    let err = f
        .client
        .submit(f.target(), &guide_request(), "scope-1")
        .await
        .unwrap_err();
    match &err {
        CxoneError::Auth {
            problem: AuthProblem::MissingScope { scopes },
            ..
        } => assert!(
            scopes.contains(&"ai:training:write".to_string()),
            "{scopes:?}"
        ),
        other => panic!("expected a missing scope, got {other:?}"),
    }
    assert_eq!(f.sim.stats().count("submit", 403), 1);
    assert_eq!(f.sim.stats().jobs_created, 0);
}

async fn rate_limited(format: RetryAfterFormat) -> Duration {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("rl").await;
    f.sim.set_faults(Faults {
        rate_limit_per_second: Some(0.5),
        retry_after_format: format,
        ..Faults::default()
    });
    for _ in 0..5 {
        match f.client.status(f.target(), &job).await {
            Ok(_) => continue,
            Err(e @ CxoneError::RateLimited { .. }) => {
                assert!(e.is_transient());
                assert_eq!(e.status(), Some(429));
                assert!(f.sim.stats().count("status", 429) >= 1);
                return e.retry_after().unwrap();
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("never rate limited");
}

#[tokio::test]
async fn rate_limit_retry_after_in_seconds() {
    let wait = rate_limited(RetryAfterFormat::Seconds).await;
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3),
        "{wait:?}"
    );
}

#[tokio::test]
async fn rate_limit_retry_after_as_http_date() {
    let wait = rate_limited(RetryAfterFormat::HttpDate).await;
    // An HTTP-date has one-second resolution, so the wait may round down to 0-3 s.
    assert!(wait <= Duration::from_secs(3), "{wait:?}");
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("5xx").await;
    f.sim.set_faults(Faults {
        fault_rate: 1.0,
        ..Faults::default()
    });
    let err = f.client.status(f.target(), &job).await.unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::Retryable {
                kind: Transient::Server(500 | 503),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    f.sim.set_faults(Faults::default());
    assert!(f.client.status(f.target(), &job).await.is_ok());
}

#[tokio::test]
async fn slow_responses_time_out() {
    let client_config = ClientConfig {
        status_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let f = Fixture::with_client_config(SimulatorConfig::default(), client_config).await;
    let job = f.submit("slow").await;
    f.sim.set_faults(Faults {
        slow_rate: 1.0,
        slow_delay_ms: 3000,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let err = f.client.status(f.target(), &job).await.unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::Retryable {
                kind: Transient::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout cut the call short"
    );
}

#[tokio::test]
async fn malformed_responses_are_classified() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("mal").await;
    f.sim.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    for result in [
        f.client.status(f.target(), &job).await.map(|_| ()),
        f.client
            .submit(f.target(), &guide_request(), "mal-2")
            .await
            .map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, CxoneError::Malformed { .. }), "{err:?}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = Endpoint::new(&format!("http://{addr}"), None).unwrap();
    let creds = Credentials {
        client_id: "x".into(),
        client_secret: SecretString::new("y"),
        version: "1".into(),
    };
    let client = CxoneClient::new(ClientConfig::default()).unwrap();
    let target = Target {
        endpoint: &endpoint,
        credentials: &creds,
    };
    let err = client.status(target, "job-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::Retryable {
                kind: Transient::Connection,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn idempotent_resubmission_returns_the_same_job() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let a = f.submit("same-key").await;
    let b = f.submit("same-key").await;
    let c = f.submit("other-key").await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let stats = f.sim.stats();
    assert_eq!(stats.jobs_created, 2);
    assert_eq!(stats.idempotent_replays, 1);
}

#[tokio::test]
async fn lost_submit_response_is_recovered_by_the_idempotency_key() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    f.sim.set_faults(Faults {
        post_commit_fault_rate: 1.0,
        ..Faults::default()
    });
    let err = f
        .client
        .submit(f.target(), &guide_request(), "lost")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        f.sim.stats().jobs_created,
        1,
        "the job exists although the response was lost"
    );
    f.sim.set_faults(Faults::default());
    f.submit("lost").await;
    assert_eq!(
        f.sim.stats().jobs_created,
        1,
        "retrying with the same key made no second job"
    );
}

#[tokio::test]
async fn a_lookup_by_key_finds_the_job_without_creating_one() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    assert_eq!(
        f.client.lookup(f.target(), "never-used").await.unwrap(),
        None,
        "a new key names nothing"
    );
    assert_eq!(f.sim.stats().jobs_created, 0, "the probe created nothing");
    let job = f.submit("used").await;
    assert_eq!(
        f.client.lookup(f.target(), "used").await.unwrap(),
        Some(job.clone())
    );
    assert_eq!(f.sim.stats().jobs_created, 1);
    // A submission under a used key with another payload names the job too.
    let mut other = guide_request();
    other.skill_id = "skill-other".into();
    let err = f
        .client
        .submit(f.target(), &other, "used")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CxoneError::KeyInUse { job_id, .. } if *job_id == job),
        "{err:?}"
    );
}

#[tokio::test]
async fn validation_rejection_carries_cxone_details() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let mut req = guide_request();
    req.training_data.utterances[0].language = Some("de".into());
    for i in 0..6 {
        req.training_data.utterances.push(Utterance {
            text: format!("cancel now please {i}"),
            label: "cancel_sub".into(),
            language: Some("en".into()),
        });
    }
    let err = f.client.submit(f.target(), &req, "bad").await.unwrap_err();
    match &err {
        CxoneError::Rejected {
            status: 400,
            details,
            ..
        } => {
            assert!(
                details.iter().any(|d| d.contains("mixed languages")),
                "{details:?}"
            );
            assert!(
                details.iter().any(|d| d.contains("class imbalance")),
                "{details:?}"
            );
        }
        other => panic!("expected a 400 rejection, got {other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn cancel_running_finished_and_unknown_jobs() {
    let config = SimulatorConfig {
        job_duration: Duration::from_secs(60),
        ..SimulatorConfig::default()
    };
    let f = Fixture::start(config).await;
    let job = f.submit("cancel").await;
    match f.client.cancel(f.target(), &job).await.unwrap() {
        CancelOutcome::Cancelled(s) => assert_eq!(s.status, JobState::Cancelled),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.client.cancel(f.target(), &job).await.unwrap(),
        CancelOutcome::AlreadyTerminal
    );
    assert_eq!(
        f.client
            .cancel(f.target(), "job-000000000000000000000000")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        f.client.status(f.target(), &job).await.unwrap().status,
        JobState::Cancelled
    );
    let err = f.client.evaluation(f.target(), &job).await.unwrap_err();
    assert!(
        matches!(err, CxoneError::Rejected { status: 409, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unsafe_job_ids_never_reach_the_network() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let err = f
        .client
        .status(f.target(), "../../oauth/token")
        .await
        .unwrap_err();
    assert!(matches!(err, CxoneError::InvalidRequest { .. }), "{err:?}");
    assert_eq!(f.sim.stats().total("status"), 0);
}

// ---------------------------------------------------------------------------------------------
// Capped reads of response bodies, against a tiny HTTP/1.1 server on loopback that can send
// bodies of any size, including endless ones.

mod raw {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// The access token the server issues (must never appear in an error).
    pub const TOKEN: &str = "raw-token-0123456789abcdef";
    /// What endless bodies are made of: JSON whitespace, so a parser would keep accepting it.
    pub const FILLER: u8 = b' ';
    /// An endless body stops by itself after this much, so a broken client cannot hang a test.
    const SAFETY_STOP: u64 = 1 << 30;

    /// How the server answers a request.
    #[derive(Clone)]
    pub enum Reply {
        /// A valid token response.
        Token,
        /// `status` with a chunked body that never ends.
        Endless { status: u16 },
        /// `status` declaring a huge `Content-Length`, then sending filler.
        Declared { status: u16 },
        /// `status` with exactly this body.
        Fixed { status: u16, body: Arc<Vec<u8>> },
    }

    pub struct Server {
        pub addr: SocketAddr,
        /// Bytes written to each finished API connection (after its headers), in order.
        pub written: mpsc::UnboundedReceiver<u64>,
    }

    impl Server {
        pub async fn start(token: Reply, api: Reply) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, written) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (token, api, tx) = (token.clone(), api.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(n) = serve(stream, token, api).await {
                            let _ = tx.send(n);
                        }
                    });
                }
            });
            Self { addr, written }
        }

        pub fn base_url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    /// Serves one request; returns the body bytes written for API requests.
    async fn serve(mut stream: TcpStream, token: Reply, api: Reply) -> Option<u64> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > 64 * 1024 {
                return None;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_string();
        let length: usize = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        // Read the request body, so closing the socket does not reset the response.
        let mut have = head.len() - end;
        while have < length {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let is_token = text.starts_with("POST /oauth/token ");
        let reply = if is_token { token } else { api };
        let written = send(&mut stream, reply).await;
        (!is_token).then_some(written)
    }

    async fn send(stream: &mut TcpStream, reply: Reply) -> u64 {
        let json = |status: u16, body: &[u8]| {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        };
        match reply {
            Reply::Token => {
                let body = format!(
                    r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#
                );
                let _ = stream.write_all(&json(200, body.as_bytes())).await;
                0
            }
            Reply::Fixed { status, body } => {
                let _ = stream.write_all(&json(status, &body)).await;
                body.len() as u64
            }
            Reply::Endless { status } => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return 0;
                }
                let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                chunk.extend(std::iter::repeat_n(FILLER, 64 * 1024));
                chunk.extend_from_slice(b"\r\n");
                pump(stream, &chunk).await
            }
            Reply::Declared { status } => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    1u64 << 40
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return 0;
                }
                pump(stream, &[FILLER; 64 * 1024]).await
            }
        }
    }

    /// Writes `chunk` until the peer goes away (or the safety stop).
    async fn pump(stream: &mut TcpStream, chunk: &[u8]) -> u64 {
        let mut written = 0u64;
        while written < SAFETY_STOP {
            if stream.write_all(chunk).await.is_err() {
                break;
            }
            written += chunk.len() as u64;
        }
        written
    }
}

const MIB: u64 = 1024 * 1024;

/// Loopback socket buffers hold a few MiB that the server counts as written although the
/// client never read them; anything beyond this means the client kept reading.
const SOCKET_SLACK: u64 = 16 * MIB;

struct RawFixture {
    server: raw::Server,
    endpoint: Endpoint,
    creds: Credentials,
    client: CxoneClient,
}

impl RawFixture {
    async fn start(token: raw::Reply, api: raw::Reply) -> Self {
        let server = raw::Server::start(token, api).await;
        let endpoint = Endpoint::new(&server.base_url(), None).unwrap();
        Self {
            server,
            endpoint,
            creds: Credentials {
                client_id: "raw-client".into(),
                client_secret: SecretString::new("raw-secret-value"),
                version: "1".into(),
            },
            client: CxoneClient::new(ClientConfig::default()).unwrap(),
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            endpoint: &self.endpoint,
            credentials: &self.creds,
        }
    }

    /// Body bytes the server wrote to the API connection before the client went away.
    async fn written(&mut self) -> u64 {
        tokio::time::timeout(Duration::from_secs(10), self.server.written.recv())
            .await
            .expect("the client closed the connection")
            .expect("the server reported the connection")
    }
}

/// Runs `call` with a deadline far below what reading an endless body would take.
async fn promptly<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call returned while the body was still streaming")
}

/// Checks that an error message quotes neither the body, the token, the secret nor the URL.
fn assert_clean(message: &str, f: &RawFixture) {
    for leak in [
        raw::TOKEN,
        "raw-secret-value",
        &f.server.addr.to_string(),
        "     ",
    ] {
        assert!(!message.contains(leak), "{leak:?} in {message:?}");
    }
}

#[tokio::test]
async fn endless_success_body_stops_at_the_small_limit() {
    let mut f = RawFixture::start(raw::Reply::Token, raw::Reply::Endless { status: 200 }).await;
    let err = promptly(f.client.status(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::TooLarge {
                call: cxone_skill_operator::cxone::Call::Status,
                limit: 1048576
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.category(), "too_large");
    assert!(!err.is_transient());
    let message = err.to_string();
    assert_eq!(
        message,
        "status: the CXone response body is larger than the 1 MiB limit for status responses; it was not read"
    );
    assert_clean(&message, &f);
    let written = f.written().await;
    assert!(
        written < MIB + SOCKET_SLACK,
        "the client read {written} bytes"
    );
}

#[tokio::test]
async fn evaluation_has_its_own_larger_limit() {
    // A 2 MiB evaluation is fine (above the 1 MiB limit of the other calls)...
    let n = 2 * MIB as usize / 24;
    let body = serde_json::json!({
        "labels": [{"id": "label_a"}, {"id": "label_b"}],
        "actuals": vec!["label_a"; n],
        "predictions": vec!["label_a"; n],
    });
    let body = Arc::new(serde_json::to_vec(&body).unwrap());
    assert!(body.len() as u64 > MIB);
    let f = RawFixture::start(
        raw::Reply::Token,
        raw::Reply::Fixed {
            status: 200,
            body: body.clone(),
        },
    )
    .await;
    let eval = promptly(f.client.evaluation(f.target(), "job-1"))
        .await
        .unwrap();
    assert_eq!(eval.actuals.len(), n);
    assert_eq!(eval.precision, None, "no server summary is needed");
    // ...the same size is too large for a status response...
    let err = promptly(f.client.status(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CxoneError::TooLarge { limit: 1048576, .. }),
        "{err:?}"
    );
    // ...and an endless evaluation stops at 16 MiB.
    let mut f = RawFixture::start(raw::Reply::Token, raw::Reply::Endless { status: 200 }).await;
    let err = promptly(f.client.evaluation(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::TooLarge {
                call: cxone_skill_operator::cxone::Call::Evaluation,
                limit
            } if limit == 16 * MIB as usize
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("16 MiB limit for evaluation"),
        "{err}"
    );
    let written = f.written().await;
    assert!(
        written < 16 * MIB + SOCKET_SLACK,
        "the client read {written} bytes"
    );
}

#[tokio::test]
async fn endless_error_bodies_are_not_read() {
    let mut f = RawFixture::start(raw::Reply::Token, raw::Reply::Endless { status: 503 }).await;
    let err = promptly(f.client.status(f.target(), "job-1"))
        .await
        .unwrap_err();
    match &err {
        CxoneError::Retryable {
            kind: Transient::Server(503),
            message,
            ..
        } => {
            assert!(
                message.contains("larger than the 64 KiB limit and was not read"),
                "{message}"
            );
            assert_clean(message, &f);
        }
        other => panic!("expected a retryable 503, got {other:?}"),
    }
    assert_clean(&err.to_string(), &f);
    let written = f.written().await;
    assert!(written < SOCKET_SLACK, "the client read {written} bytes");

    // A rejection (4xx) and a token endpoint failure are classified the same way.
    let mut f = RawFixture::start(raw::Reply::Token, raw::Reply::Endless { status: 400 }).await;
    let err = promptly(f.client.cancel(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CxoneError::Rejected { status: 400, ref message, .. } if message.contains("64 KiB")),
        "{err:?}"
    );
    assert!(f.written().await < SOCKET_SLACK);
    let f = RawFixture::start(
        raw::Reply::Endless { status: 401 },
        raw::Reply::Endless { status: 200 },
    )
    .await;
    let err = promptly(f.client.status(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CxoneError::Auth { problem: AuthProblem::InvalidClient, ref message, .. } if message.contains("64 KiB")),
        "{err:?}"
    );
    assert_clean(&err.to_string(), &f);
}

#[tokio::test]
async fn declared_oversized_bodies_are_refused_before_reading() {
    let mut f = RawFixture::start(raw::Reply::Token, raw::Reply::Declared { status: 200 }).await;
    let err = promptly(f.client.export(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::TooLarge {
                call: cxone_skill_operator::cxone::Call::Export,
                limit: 1048576
            }
        ),
        "{err:?}"
    );
    assert!(f.written().await < SOCKET_SLACK);
    // The token response is capped too.
    let f = RawFixture::start(
        raw::Reply::Declared { status: 200 },
        raw::Reply::Endless { status: 200 },
    )
    .await;
    let err = promptly(f.client.status(f.target(), "job-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CxoneError::TooLarge {
                call: cxone_skill_operator::cxone::Call::Token,
                ..
            }
        ),
        "{err:?}"
    );
}
