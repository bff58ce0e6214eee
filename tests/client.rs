//! The CXone client against the simulator over real HTTP on loopback.

use std::sync::Arc;
use std::time::Duration;

use cxone_skill_operator::cxone::model::{
    Hyperparameters, JobState, LabelDef, TrainingJobRequest, Utterance,
};
use cxone_skill_operator::cxone::{
    AuthProblem, CancelOutcome, ClientConfig, Credentials, CxoneClient, CxoneError, Endpoint,
    SecretString, Target, Transient,
};
use cxone_skill_operator::evaluation::{EvaluationOptions, analyze};
use cxone_skill_operator::simulator::{
    self, ClientCredentials, Faults, RetryAfterFormat, SimulatorConfig, SimulatorHandle,
};
use cxone_skill_operator::training::{Dataset, ValidationRules, build_payload, validate};

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

fn guide_request() -> TrainingJobRequest {
    let labels = [
        ("cancel_sub", "Cancel Subscription"),
        ("upgrade_plan", "Upgrade Plan"),
        ("reset_pwd", "Reset Password"),
    ]
    .iter()
    .map(|(id, name)| LabelDef {
        id: id.to_string(),
        name: name.to_string(),
        description: None,
    })
    .collect();
    let mut d = Dataset::new(Some("en".into()), labels);
    d.extend_inline(
        "utterances",
        [
            ("I want to cancel my subscription", "cancel_sub"),
            ("Please terminate my account", "cancel_sub"),
            ("How do I upgrade my plan", "upgrade_plan"),
            ("I need a higher tier", "upgrade_plan"),
            ("Reset my password", "reset_pwd"),
            ("I forgot my login details", "reset_pwd"),
        ]
        .iter()
        .map(|(text, label)| Utterance {
            text: text.to_string(),
            label: label.to_string(),
            language: None,
        }),
    );
    let valid = validate(d, &ValidationRules::default()).unwrap();
    build_payload("skill-abc-123", &valid, 0.2, &Hyperparameters::default()).0
}

#[tokio::test]
async fn full_flow_submit_poll_evaluate_export() {
    let f = Fixture::start(SimulatorConfig::default()).await;
    let job = f.submit("run-1").await;
    assert_eq!(f.wait_terminal(&job).await, JobState::Completed);
    let eval = f.client.evaluation(f.target(), &job).await.unwrap();
    assert_eq!(eval.actuals.len(), 3, "one validation example per label");
    let report = analyze(&eval, &EvaluationOptions::default()).unwrap();
    assert!(
        report.server_comparison.consistent,
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
