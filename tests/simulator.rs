//! The CXone simulator over real HTTP on 127.0.0.1, driven with plain reqwest calls.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cxone_skill_operator::cxone::model::{
    ApiErrorBody, EvaluationResponse, ExportResponse, JobState, JobStatus, SubmitResponse,
    TokenResponse,
};
use cxone_skill_operator::simulator::{
    AdminAccess, ClientCredentials, Faults, RetryAfterFormat, SimulatorConfig, SimulatorHandle,
    Stats, spawn,
};
use cxone_skill_operator::testkit::{GUIDE_UTTERANCES, guide_label_ids};
use reqwest::StatusCode;
use serde_json::{Value, json};

const JOBS: &str = "/api/v2/ai/skills/training/jobs";
const ALL_SCOPES: &str = "ai:skills:read ai:skills:write ai:training:read ai:training:write";
/// Longest any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

struct Sim {
    handle: SimulatorHandle,
    http: reqwest::Client,
    base: String,
}

async fn start(config: SimulatorConfig) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = spawn(config, listener).await.unwrap();
    let base = handle.base_url();
    Sim {
        handle,
        http: reqwest::Client::new(),
        base,
    }
}

/// The default configuration with the admin endpoints open (these tests run on loopback).
fn config() -> SimulatorConfig {
    SimulatorConfig {
        admin: AdminAccess::Open,
        ..SimulatorConfig::default()
    }
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token for `test-client` with every scope (RFC 6749 form body).
    async fn token(&self) -> String {
        self.token_for("test-client", "test-secret", ALL_SCOPES)
            .await
    }

    async fn token_for(&self, id: &str, secret: &str, scope: &str) -> String {
        let resp = self
            .http
            .post(self.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<TokenResponse>().await.unwrap().access_token
    }

    async fn submit(&self, token: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(self.url(JOBS)).bearer_auth(token).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    async fn submit_ok(&self, token: &str, body: &Value) -> String {
        let resp = self.submit(token, body, None).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<SubmitResponse>().await.unwrap().job_id
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, token: &str, job: &str) -> JobStatus {
        let resp = self.get(token, &format!("{JOBS}/{job}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Polls until the job is terminal; returns the final status and the states seen, in order.
    async fn wait_terminal(&self, token: &str, job: &str) -> (JobStatus, Vec<JobState>) {
        let deadline = Instant::now() + DEADLINE;
        let mut seen: Vec<JobState> = Vec::new();
        let mut last_progress = 0;
        loop {
            let status = self.status(token, job).await;
            assert!(
                status.progress >= last_progress,
                "progress went back: {status:?}"
            );
            last_progress = status.progress;
            if seen.last() != Some(&status.status) {
                seen.push(status.status);
            }
            if status.status.is_terminal() {
                return (status, seen);
            }
            assert!(
                Instant::now() < deadline,
                "job {job} still {:?}",
                status.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stats_over_http(&self) -> Stats {
        self.http
            .get(self.url("/_sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn error_body(resp: reqwest::Response) -> ApiErrorBody {
    resp.json().await.unwrap()
}

fn utterance(text: &str, label: &str, language: &str) -> Value {
    json!({"text": text, "label": label, "language": language})
}

fn request(utterances: Vec<Value>, labels: &[&str]) -> Value {
    let labels: Vec<Value> = labels
        .iter()
        .map(|id| json!({"id": id, "name": id.to_uppercase(), "description": "test label"}))
        .collect();
    json!({
        "skillId": "skill-abc-123",
        "trainingData": {"utterances": utterances, "validationSplit": 0.2, "language": "en"},
        "labels": labels,
        "hyperparameters": {"maxEpochs": 50, "earlyStopping": true, "patience": 5}
    })
}

/// The guide's complete example: 6 utterances, 3 labels.
fn guide_payload() -> Value {
    request(
        GUIDE_UTTERANCES
            .iter()
            .map(|(text, label)| utterance(text, label, "en"))
            .collect(),
        &guide_label_ids(),
    )
}

/// Three intents with disjoint vocabularies, 20 utterances each.
fn separable_payload() -> Value {
    let mut utterances = Vec::new();
    for i in 0..20 {
        utterances.push(utterance(
            &format!("my invoice number {i} has a wrong charge"),
            "billing",
            "en",
        ));
        utterances.push(utterance(
            &format!("will it rain or snow tomorrow morning {i}"),
            "weather",
            "en",
        ));
        utterances.push(utterance(
            &format!("book a table for {i} people tonight please"),
            "booking",
            "en",
        ));
    }
    request(utterances, &["billing", "weather", "booking"])
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn token_via_form_basic_and_json() {
    let sim = start(config()).await;
    // RFC 6749 form body.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "test-client"),
            ("client_secret", "test-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let form: TokenResponse = resp.json().await.unwrap();
    assert_eq!(form.token_type, "Bearer");
    assert_eq!(form.expires_in, 3600);
    assert_eq!(
        form.scope.as_deref(),
        Some(ALL_SCOPES),
        "empty request: every allowed scope"
    );
    assert_eq!(form.access_token.len(), 64);

    // HTTP Basic.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("test-client", Some("test-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "ai:training:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let basic: TokenResponse = resp.json().await.unwrap();
    assert_eq!(basic.scope.as_deref(), Some("ai:training:read"));
    assert_ne!(basic.access_token, form.access_token);
    // The same client id repeated in the body is accepted.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("test-client", Some("test-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "test-client"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // JSON body, exactly as the guide sends it.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": "test-client",
            "client_secret": "test-secret",
            "scope": ALL_SCOPES,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let json_token: TokenResponse = resp.json().await.unwrap();
    assert_eq!(json_token.scope.as_deref(), Some(ALL_SCOPES));

    // Every token works.
    for token in [
        &form.access_token,
        &basic.access_token,
        &json_token.access_token,
    ] {
        let resp = sim
            .get(token, &format!("{JOBS}/job-000000000000000000000000"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_body(resp).await.error, "job_not_found");
    }
    assert_eq!(sim.handle.stats().tokens_issued, 4);
}

#[tokio::test]
async fn token_request_errors() {
    let sim = start(config()).await;
    let post_form = |fields: Vec<(&'static str, &'static str)>| {
        sim.http.post(sim.url("/oauth/token")).form(&fields).send()
    };

    let resp = post_form(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "test-client"),
        ("client_secret", "wrong"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_body(resp).await.error, "invalid_client");

    let resp = post_form(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "nobody"),
        ("client_secret", "test-secret"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_body(resp).await.error, "invalid_client");

    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("test-client", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );

    let resp = post_form(vec![
        ("grant_type", "password"),
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(resp).await.error, "unsupported_grant_type");

    let resp = post_form(vec![
        ("grant_type", "client_credentials"),
        ("client_id", "test-client"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = error_body(resp).await;
    assert_eq!(body.error, "invalid_request");
    assert!(body.message.contains("client_secret"), "{}", body.message);

    let resp = post_form(vec![
        ("client_id", "test-client"),
        ("client_secret", "test-secret"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_body(resp).await.message.contains("grant_type"));

    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(resp).await.error, "invalid_request");

    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .body(vec![b'a'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(resp).await.error, "payload_too_large");

    // Basic credentials plus a different client id in the body: which client is it?
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("test-client", Some("test-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "someone-else"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_body(resp).await.message.contains("both"));

    let stats = sim.handle.stats();
    assert_eq!(stats.count("token", 401), 3);
    assert_eq!(stats.count("token", 400), 5);
    assert_eq!(stats.tokens_issued, 0);
}

#[tokio::test]
async fn scopes_are_intersected_and_enforced() {
    let mut cfg = config();
    cfg.clients.push(ClientCredentials {
        client_id: "reader".into(),
        client_secret: "reader-secret".into(),
        scopes: vec!["ai:training:read".into()],
    });
    let sim = start(cfg).await;

    // Unknown and disallowed scopes are dropped; `scope` says what was granted.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reader"),
            ("client_secret", "reader-secret"),
            ("scope", "ai:training:read ai:training:write made:up"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let granted: TokenResponse = resp.json().await.unwrap();
    assert_eq!(granted.scope.as_deref(), Some("ai:training:read"));

    // Nothing grantable: invalid_scope.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reader"),
            ("client_secret", "reader-secret"),
            ("scope", "made:up ai:skills:write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(resp).await.error, "invalid_scope");

    // A read-only token cannot submit: 403 naming the missing scopes.
    let resp = sim
        .submit(&granted.access_token, &guide_payload(), None)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let body = error_body(resp).await;
    assert_eq!(body.error, "insufficient_scope");
    assert!(body.message.contains("ai:skills:write") && body.message.contains("ai:training:write"));

    // A token with only ai:training:read cannot cancel either, but can read.
    let full = sim.token().await;
    let job = sim.submit_ok(&full, &guide_payload()).await;
    let resp = sim
        .http
        .post(sim.url(&format!("{JOBS}/{job}/cancel")))
        .bearer_auth(
            sim.token_for("test-client", "test-secret", "ai:training:read")
                .await,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = error_body(resp).await;
    assert!(
        body.message.contains("ai:training:write") && !body.message.contains("ai:skills:write")
    );
    // The other client cannot see the job at all.
    let resp = sim
        .get(&granted.access_token, &format!("{JOBS}/{job}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.handle.stats().count("submit", 403), 1);
}

#[tokio::test]
async fn bearer_tokens_missing_unknown_and_revoked() {
    let sim = start(config()).await;
    let path = format!("{JOBS}/job-000000000000000000000000");

    let resp = sim.http.get(sim.url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#));
    assert_eq!(error_body(resp).await.error, "invalid_token");

    let resp = sim.get("not-a-token", &path).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(error_body(resp).await.message.contains("not recognised"));

    let resp = sim
        .http
        .get(sim.url(&path))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let token = sim.token().await;
    assert_eq!(sim.get(&token, &path).await.status(), StatusCode::NOT_FOUND);
    sim.handle.revoke_tokens();
    let resp = sim.get(&token, &path).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(error_body(resp).await.message.contains("revoked"));

    // Through the admin endpoint too.
    let token = sim.token().await;
    let resp = sim
        .http
        .post(sim.url("/_sim/tokens/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(
        sim.get(&token, &path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sim.handle.stats().count("status", 401), 5);
}

#[tokio::test]
async fn tokens_expire() {
    let sim = start(SimulatorConfig {
        token_ttl: Duration::from_millis(200),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let path = format!("{JOBS}/job-000000000000000000000000");
    assert_eq!(sim.get(&token, &path).await.status(), StatusCode::NOT_FOUND);
    let deadline = Instant::now() + DEADLINE;
    let body = loop {
        let resp = sim.get(&token, &path).await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            break error_body(resp).await;
        }
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body.error, "invalid_token");
    assert!(body.message.contains("expired"), "{}", body.message);
}

// ---------------------------------------------------------------------------------------------
// Submission

#[tokio::test]
async fn invalid_submissions_get_one_detail_per_violation() {
    let sim = start(config()).await;
    let token = sim.token().await;

    let mut utterances: Vec<Value> = (0..8)
        .map(|i| utterance(&format!("cancel now {i}"), "cancel", "en"))
        .collect();
    utterances.push(utterance("quiero cancelar", "cancel", "es"));
    utterances.push(utterance("upgrade me", "upgrade", "en"));
    utterances.push(utterance("what is this", "mystery", "en"));
    let resp = sim
        .submit(&token, &request(utterances, &["cancel", "upgrade"]), None)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = error_body(resp).await;
    assert_eq!(body.error, "validation_failed");
    assert!(
        !body.message.contains('\n'),
        "one-line summary: {}",
        body.message
    );
    assert_eq!(body.details.len(), 3, "{:#?}", body.details);
    let has = |needle: &str| body.details.iter().any(|d| d.contains(needle));
    assert!(has("mixed languages"), "{:#?}", body.details);
    assert!(has("class imbalance"), "{:#?}", body.details);
    assert!(has("\"mystery\" is not defined"), "{:#?}", body.details);

    let resp = sim
        .submit(&token, &request(vec![], &["cancel"]), None)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = error_body(resp).await;
    assert!(
        body.details.iter().any(|d| d.contains("no utterances")),
        "{:#?}",
        body.details
    );

    assert_eq!(sim.handle.stats().jobs_created, 0);
    assert_eq!(sim.handle.stats().count("submit", 400), 2);
}

#[tokio::test]
async fn malformed_bodies_are_400_not_422() {
    let sim = start(config()).await;
    let token = sim.token().await;
    let send = |body: &'static str| {
        sim.http
            .post(sim.url(JOBS))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{not json", "", "[]", r#"{"skillId": 5}"#] {
        let resp = send(body).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let err = error_body(resp).await;
        assert_eq!(err.error, "invalid_request");
        assert!(
            err.message.contains("not a valid training job"),
            "{}",
            err.message
        );
    }
    let mut wrong_type = guide_payload();
    wrong_type["trainingData"]["validationSplit"] = json!("a lot");
    let resp = sim.submit(&token, &wrong_type, None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let message = error_body(resp).await.message;
    assert!(
        message.contains("invalid type") && message.contains("a lot"),
        "{message}"
    );

    // Odd paths and methods still answer with an ApiErrorBody.
    let resp = sim.get(&token, "/api/v2/nothing/here").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(resp).await.error, "not_found");
    let resp = sim.http.delete(sim.url(JOBS)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_body(resp).await.error, "method_not_allowed");
    let resp = sim.get(&token, &format!("{JOBS}/%FF%FE")).await;
    assert!(resp.status().is_client_error());
    error_body(resp).await;
}

// ---------------------------------------------------------------------------------------------
// Jobs

#[tokio::test]
async fn a_job_runs_through_the_stages_and_evaluates() {
    let sim = start(config()).await;
    let token = sim.token().await;
    let resp = sim.submit(&token, &guide_payload(), None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let submitted: SubmitResponse = resp.json().await.unwrap();
    assert_eq!(submitted.status, JobState::Queued);
    let id = submitted.job_id;
    assert!(id.starts_with("job-") && id.len() == 28, "{id}");
    assert!(
        id[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );

    // Not done yet: 409 on the results.
    let resp = sim.get(&token, &format!("{JOBS}/{id}/evaluation")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_body(resp).await.error, "job_not_completed");
    let resp = sim
        .get(&token, &format!("{JOBS}/{id}/artifacts/export"))
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let (done, seen) = sim.wait_terminal(&token, &id).await;
    let order = [
        JobState::Queued,
        JobState::Provisioning,
        JobState::Training,
        JobState::Evaluating,
        JobState::Completed,
    ];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .expect("no failure or cancel")
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.contains(&JobState::Training), "{seen:?}");
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.progress, 100);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert!(done.compute_units_allocated > 0.0);
    assert!(
        done.compute_units_used > 0.0 && done.compute_units_used <= done.compute_units_allocated
    );
    assert!(done.failure_reason.is_none());

    let resp = sim.get(&token, &format!("{JOBS}/{id}/evaluation")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let eval: EvaluationResponse = resp.json().await.unwrap();
    let ids: BTreeSet<&str> = eval.labels.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["cancel_sub", "upgrade_plan", "reset_pwd"])
    );
    assert_eq!(
        eval.actuals.len(),
        3,
        "20 % of 2 per label, at least 1 each"
    );
    assert_eq!(eval.predictions.len(), 3);
    assert_eq!(eval.scores.len(), 3);
    assert!(eval.predictions.iter().all(|p| ids.contains(p.as_str())));
    assert!(eval.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    let matrix = eval
        .confusion_matrix
        .as_ref()
        .expect("the simulator reports a summary");
    assert_eq!(matrix.len(), 3);
    assert_eq!(matrix.iter().flatten().sum::<u64>(), 3);
    let (precision, recall) = (eval.precision.unwrap(), eval.recall.unwrap());
    assert!((0.0..=1.0).contains(&precision) && (0.0..=1.0).contains(&recall));
    assert!(eval.training_duration_seconds > 0.0);

    let stats = sim.handle.stats();
    assert_eq!(stats.jobs_in("COMPLETED"), 1);
    assert_eq!(stats.count("evaluation", 409), 1);
    assert_eq!(stats.count("evaluation", 200), 1);
}

#[tokio::test]
async fn separable_data_scores_well() {
    let sim = start(SimulatorConfig {
        job_duration: Duration::from_millis(100),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &separable_payload()).await;
    sim.wait_terminal(&token, &id).await;
    let eval: EvaluationResponse = sim
        .get(&token, &format!("{JOBS}/{id}/evaluation"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(eval.actuals.len(), 12, "4 of 20 per label");
    assert_eq!(eval.predictions, eval.actuals);
    assert!(
        eval.precision >= Some(0.99) && eval.recall >= Some(0.99),
        "{eval:?}"
    );
    assert!(eval.scores.iter().all(|&s| s > 0.8), "{:?}", eval.scores);
    for (i, row) in eval.confusion_matrix.iter().flatten().enumerate() {
        assert_eq!(row[i], 4);
    }
}

#[tokio::test]
async fn artifacts_are_signed_and_expire() {
    let sim = start(SimulatorConfig {
        job_duration: Duration::from_millis(100),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &separable_payload()).await;
    sim.wait_terminal(&token, &id).await;
    let resp = sim
        .get(&token, &format!("{JOBS}/{id}/artifacts/export"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let export: ExportResponse = resp.json().await.unwrap();
    let weights_url = export.artifacts.model_weights_url.clone();
    let config_url = export.artifacts.config_url.clone();
    assert!(
        weights_url.starts_with(&format!("{}/_sim/artifacts/{id}/", sim.base)),
        "{weights_url}"
    );
    assert!(export.expires_at > jiff::Timestamp::now());

    // Fetch both without any token: the signature is the authorisation.
    let resp = sim.http.get(&weights_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let weights: Value = resp.json().await.unwrap();
    assert_eq!(weights["labels"], json!(["billing", "weather", "booking"]));
    assert!(
        weights["featureCounts"]["invoice"]["billing"]
            .as_u64()
            .unwrap()
            > 0
    );
    let resp = sim.http.get(&config_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cfg: Value = resp.json().await.unwrap();
    assert_eq!(cfg["jobId"], json!(id));
    assert_eq!(cfg["validationExamples"], json!(12));

    // Tampered signature, tampered path, unsigned.
    let mut tampered = weights_url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let other_path = weights_url.replace("model-weights.json", "config.json");
    let unsigned = weights_url.split('?').next().unwrap().to_string();
    for url in [tampered, other_path, unsigned] {
        let resp = sim.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{url}");
        assert!(!error_body(resp).await.message.contains("expired"));
    }
    let stats = sim.handle.stats();
    assert_eq!(stats.count("artifact", 200), 2);
    assert_eq!(stats.count("artifact", 403), 3);
}

#[tokio::test]
async fn synthetic_weights_have_the_configured_size_and_depend_only_on_the_job() {
    use sha2::{Digest, Sha256};
    // 3 MiB and a few bytes: not a multiple of the simulator's piece size.
    const SIZE: u64 = 3 * 1024 * 1024 + 5;
    let sim = start(SimulatorConfig {
        job_duration: Duration::from_millis(50),
        artifact_weights_bytes: Some(SIZE),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let mut digests = Vec::new();
    for _ in 0..2 {
        let id = sim.submit_ok(&token, &separable_payload()).await;
        sim.wait_terminal(&token, &id).await;
        let export: ExportResponse = sim
            .get(&token, &format!("{JOBS}/{id}/artifacts/export"))
            .await
            .json()
            .await
            .unwrap();
        let mut per_job = Vec::new();
        for _ in 0..2 {
            let mut resp = sim
                .http
                .get(&export.artifacts.model_weights_url)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.content_length(), Some(SIZE));
            assert_eq!(resp.headers()["content-type"], "application/octet-stream");
            // Read piece by piece, as the registry copy does: the body arrives in many pieces.
            let (mut len, mut pieces, mut hash) = (0u64, 0, Sha256::new());
            while let Some(piece) = resp.chunk().await.unwrap() {
                len += piece.len() as u64;
                pieces += 1;
                hash.update(&piece);
            }
            assert_eq!(len, SIZE);
            assert!(pieces > 1, "streamed, not one buffer");
            per_job.push(hex::encode(hash.finalize()));
        }
        assert_eq!(per_job[0], per_job[1], "the same job gives the same bytes");
        digests.push(per_job.remove(0));
        // The config file is still the job's JSON.
        let cfg: Value = sim
            .http
            .get(&export.artifacts.config_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cfg["jobId"], json!(id));
    }
    assert_ne!(digests[0], digests[1], "another job gives other bytes");
}

#[tokio::test]
async fn artifact_urls_expire_and_follow_the_public_url() {
    let sim = start(SimulatorConfig {
        job_duration: Duration::from_millis(50),
        artifact_ttl: Duration::from_millis(1),
        public_url: Some("https://cxone-sim.example:8443".into()),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &guide_payload()).await;
    sim.wait_terminal(&token, &id).await;
    let export: ExportResponse = sim
        .get(&token, &format!("{JOBS}/{id}/artifacts/export"))
        .await
        .json()
        .await
        .unwrap();
    let url = export.artifacts.config_url;
    assert!(
        url.starts_with("https://cxone-sim.example:8443/_sim/artifacts/"),
        "{url}"
    );
    let local = url.replace("https://cxone-sim.example:8443", &sim.base);
    let deadline = Instant::now() + DEADLINE;
    let body = loop {
        let resp = sim.http.get(&local).send().await.unwrap();
        if resp.status() == StatusCode::FORBIDDEN {
            break error_body(resp).await;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(Instant::now() < deadline, "the URL never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.message.contains("expired"), "{}", body.message);
}

#[tokio::test]
async fn idempotency_keys_replay_and_conflict() {
    let mut cfg = config();
    cfg.clients
        .push(ClientCredentials::new("other", "other-secret"));
    let sim = start(cfg).await;
    let token = sim.token().await;

    let first = sim.submit(&token, &guide_payload(), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: SubmitResponse = first.json().await.unwrap();
    // Same key, same payload (re-serialised differently): the same job, 200.
    let again = sim
        .http
        .post(sim.url(JOBS))
        .bearer_auth(&token)
        .header("Idempotency-Key", "key-1")
        .header("content-type", "application/json")
        .body(serde_json::to_string_pretty(&guide_payload()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<SubmitResponse>().await.unwrap().job_id,
        first.job_id
    );
    let stats = sim.handle.stats();
    assert_eq!((stats.jobs_created, stats.idempotent_replays), (1, 1));

    // Same key, different payload: 409.
    let resp = sim
        .submit(&token, &separable_payload(), Some("key-1"))
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body = error_body(resp).await;
    assert_eq!(body.error, "idempotency_key_reused");
    assert!(body.message.contains(&first.job_id));

    // Keys are scoped per client.
    let other = sim.token_for("other", "other-secret", "").await;
    let resp = sim.submit(&other, &guide_payload(), Some("key-1")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_ne!(
        resp.json::<SubmitResponse>().await.unwrap().job_id,
        first.job_id
    );
    // No key: always a new job.
    sim.submit_ok(&token, &guide_payload()).await;
    assert_eq!(sim.handle.stats().jobs_created, 3);

    // Concurrent submissions with one key create one job.
    let payload = separable_payload();
    let responses = futures::future::join_all(
        (0..8).map(|_| sim.submit(&token, &payload, Some("key-concurrent"))),
    )
    .await;
    let mut ids = BTreeSet::new();
    for resp in responses {
        assert!(matches!(
            resp.status(),
            StatusCode::CREATED | StatusCode::OK
        ));
        ids.insert(resp.json::<SubmitResponse>().await.unwrap().job_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let stats = sim.handle.stats();
    assert_eq!((stats.jobs_created, stats.idempotent_replays), (4, 8));
}

#[tokio::test]
async fn cancel_running_jobs_only() {
    let mut cfg = config();
    cfg.job_duration = Duration::from_secs(60);
    cfg.clients
        .push(ClientCredentials::new("other", "other-secret"));
    let sim = start(cfg).await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &guide_payload()).await;
    let cancel = |token: String, id: String| {
        sim.http
            .post(sim.url(&format!("{JOBS}/{id}/cancel")))
            .bearer_auth(token)
            .send()
    };

    // Another client's cancel does not find it.
    let other = sim.token_for("other", "other-secret", "").await;
    let resp = cancel(other, id.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = cancel(token.clone(), id.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let status: JobStatus = resp.json().await.unwrap();
    assert_eq!(status.status, JobState::Cancelled);
    assert!(status.completed_at.is_some());
    assert_eq!(sim.status(&token, &id).await.status, JobState::Cancelled);

    let resp = cancel(token.clone(), id.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_body(resp).await.error, "job_terminal");
    let resp = sim.get(&token, &format!("{JOBS}/{id}/evaluation")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(error_body(resp).await.message.contains("CANCELLED"));

    let resp = cancel(token.clone(), "job-ffffffffffffffffffffffff".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(resp).await.error, "job_not_found");
    assert_eq!(sim.handle.stats().jobs_in("CANCELLED"), 1);
}

// ---------------------------------------------------------------------------------------------
// Rate limit and faults

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(config()).await;
    let token = sim.token().await;
    let path = format!("{JOBS}/job-000000000000000000000000");
    sim.handle.set_faults(Faults {
        rate_limit_per_second: Some(2.0),
        ..Faults::default()
    });

    let limited = async |sim: &Sim| {
        for _ in 0..10 {
            let resp = sim.get(&token, &path).await;
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                return resp;
            }
        }
        panic!("never rate limited");
    };
    let resp = limited(&sim).await;
    let seconds: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1);
    assert_eq!(error_body(resp).await.error, "rate_limited");

    sim.handle.set_faults(Faults {
        rate_limit_per_second: Some(0.5),
        retry_after_format: RetryAfterFormat::HttpDate,
        ..Faults::default()
    });
    let resp = limited(&sim).await;
    let date = resp.headers()["retry-after"].to_str().unwrap().to_string();
    let when = httpdate::parse_http_date(&date).unwrap();
    assert!(
        when > std::time::SystemTime::now() - Duration::from_secs(1),
        "{date}"
    );

    // The token endpoint is limited too.
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("test-client", Some("test-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);

    let stats = sim.handle.stats();
    assert!(stats.rate_limited >= 3);
    assert_eq!(
        stats.rate_limited,
        stats.count("status", 429) + stats.count("token", 429)
    );
}

/// The status codes of `n` status calls under `faults`, on a fresh simulator seeded with `seed`.
async fn fault_sequence(seed: u64, n: usize) -> (Vec<u16>, Stats) {
    let sim = start(SimulatorConfig {
        seed,
        job_duration: Duration::from_secs(60),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &guide_payload()).await;
    sim.handle.set_faults(Faults {
        fault_rate: 0.4,
        ..Faults::default()
    });
    let mut codes = Vec::with_capacity(n);
    for _ in 0..n {
        codes.push(
            sim.get(&token, &format!("{JOBS}/{id}"))
                .await
                .status()
                .as_u16(),
        );
    }
    (codes, sim.handle.stats())
}

#[tokio::test]
async fn fault_injection_is_reproducible_with_a_seed() {
    let (a, stats) = fault_sequence(7, 40).await;
    let (b, _) = fault_sequence(7, 40).await;
    let (c, _) = fault_sequence(8, 40).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    assert!(a.iter().all(|c| matches!(c, 200 | 500 | 503)), "{a:?}");
    let faults = a.iter().filter(|&&c| c >= 500).count() as u64;
    assert!((5..=30).contains(&faults), "{a:?}");
    assert!(a.contains(&500) && a.contains(&503) && a.contains(&200));
    assert_eq!(stats.faults_injected, faults);
    assert_eq!(
        stats.count("status", 500) + stats.count("status", 503),
        faults
    );
}

#[tokio::test]
async fn post_commit_faults_create_the_job() {
    let sim = start(config()).await;
    let token = sim.token().await;
    sim.handle.set_faults(Faults {
        post_commit_fault_rate: 1.0,
        ..Faults::default()
    });
    let resp = sim
        .submit(&token, &guide_payload(), Some("lost-response"))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sim.handle.stats().jobs_created, 1);

    // The retry with the same key finds the job instead of creating another.
    sim.handle.set_faults(Faults::default());
    let resp = sim
        .submit(&token, &guide_payload(), Some("lost-response"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let job = resp.json::<SubmitResponse>().await.unwrap().job_id;
    sim.status(&token, &job).await;
    let stats = sim.handle.stats();
    assert_eq!((stats.jobs_created, stats.idempotent_replays), (1, 1));
    assert_eq!(stats.faults_by_kind.get("postCommit503"), Some(&1));
}

#[tokio::test]
async fn jobs_fail_slow_down_and_return_malformed_bodies_on_demand() {
    let sim = start(SimulatorConfig {
        job_duration: Duration::from_millis(200),
        faults: Faults {
            job_failure_rate: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let token = sim.token().await;
    let id = sim.submit_ok(&token, &guide_payload()).await;
    let (failed, seen) = sim.wait_terminal(&token, &id).await;
    assert_eq!(failed.status, JobState::Failed, "{seen:?}");
    assert!(failed.progress < 100);
    let reason = failed.failure_reason.unwrap();
    assert!(reason.contains("epoch"), "{reason}");
    let resp = sim.get(&token, &format!("{JOBS}/{id}/evaluation")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(error_body(resp).await.message.contains("FAILED"));

    sim.handle.set_faults(Faults {
        slow_rate: 1.0,
        slow_delay_ms: 300,
        ..Faults::default()
    });
    let started = Instant::now();
    sim.status(&token, &id).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.handle.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let resp = sim.get(&token, &format!("{JOBS}/{id}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<JobStatus>(&text).is_err(), "{text}");
    // Errors are never mangled.
    let resp = sim
        .get(&token, &format!("{JOBS}/job-000000000000000000000000"))
        .await;
    assert_eq!(error_body(resp).await.error, "job_not_found");

    let stats = sim.handle.stats();
    assert_eq!(stats.jobs_in("FAILED"), 1);
    assert_eq!(stats.faults_by_kind.get("slow"), Some(&1));
    assert_eq!(stats.faults_by_kind.get("malformed"), Some(&1));
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints and counters

#[tokio::test]
async fn admin_endpoints_and_counters() {
    let sim = start(config()).await;
    let resp = sim.http.get(sim.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let token = sim.token().await;
    let id = sim.submit_ok(&token, &guide_payload()).await;
    sim.status(&token, &id).await;
    sim.http
        .get(sim.url(&format!("{JOBS}/{id}")))
        .send()
        .await
        .unwrap(); // 401
    sim.get(&token, "/nowhere").await; // 404

    let over_http = sim.stats_over_http().await;
    let direct = sim.handle.stats();
    assert_eq!(over_http.calls, direct.calls);
    assert_eq!(direct.count("token", 200), 1);
    assert_eq!(direct.count("submit", 201), 1);
    assert_eq!(direct.count("status", 200), 1);
    assert_eq!(direct.count("status", 401), 1);
    assert_eq!(direct.count("other", 404), 1);
    assert_eq!(direct.total("status"), 2);
    assert_eq!(direct.jobs_created, 1);
    assert_eq!(
        direct.jobs.len(),
        7,
        "every state is listed: {:?}",
        direct.jobs
    );
    assert_eq!(direct.jobs.values().sum::<u64>(), 1);
    assert!(
        !direct.calls.contains_key("stats"),
        "admin calls are not counted"
    );

    // Faults over HTTP: read, replace, reject out-of-range values and unknown fields.
    let faults: Faults = sim
        .http
        .get(sim.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults, Faults::default());
    let resp = sim
        .http
        .put(sim.url("/_sim/faults"))
        .json(&json!({"slowRate": 0.25, "slowDelayMs": 10, "rateLimitPerSecond": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.handle.faults().slow_rate, 0.25);
    assert_eq!(sim.handle.faults().rate_limit_per_second, Some(100.0));
    for bad in [
        json!({"faultRate": 2}),
        json!({"fautRate": 0.1}),
        json!({"slowRate": "high"}),
    ] {
        let resp = sim
            .http
            .put(sim.url("/_sim/faults"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_body(resp).await.error, "invalid_request");
    }
    assert_eq!(
        sim.handle.faults().slow_rate,
        0.25,
        "rejected settings change nothing"
    );

    let addr = sim.handle.addr();
    assert_eq!(sim.base, format!("http://{addr}"));
    sim.handle.shutdown().await;
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = spawn(
        SimulatorConfig {
            clients: vec![],
            ..config()
        },
        listener,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--client-id"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Hardening: admin access, bounded stores, request size limit

const ADMIN_PATHS: [(&str, &str); 4] = [
    ("GET", "/_sim/stats"),
    ("GET", "/_sim/faults"),
    ("PUT", "/_sim/faults"),
    ("POST", "/_sim/tokens/revoke"),
];

impl Sim {
    async fn admin(&self, method: &str, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn admin_endpoints_are_off_by_default() {
    let sim = start(SimulatorConfig::default()).await;
    let token = sim.token().await;
    for (method, path) in ADMIN_PATHS.iter().chain(&[("GET", "/_sim/unknown")]) {
        let resp = sim.admin(method, path, Some(&token)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body = error_body(resp).await;
        assert_eq!(body.error, "admin_disabled");
        assert!(
            body.message.contains("--admin-token-file") && body.message.contains("--admin-open"),
            "{}",
            body.message
        );
    }
    // Nothing changed: the token still works, the faults are the defaults.
    assert_eq!(sim.handle.faults(), Faults::default());
    let id = sim.submit_ok(&token, &guide_payload()).await;
    sim.status(&token, &id).await;
    // The signed artifact downloads and /healthz are not admin endpoints.
    let resp = sim.http.get(sim.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = sim
        .http
        .get(sim.url(&format!("/_sim/artifacts/{id}/config.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_body(resp).await.error, "invalid_signature");
}

#[tokio::test]
async fn admin_endpoints_with_a_token() {
    let admin_token = "admin-token-0123456789";
    let sim = start(SimulatorConfig {
        admin: AdminAccess::Token(admin_token.into()),
        ..SimulatorConfig::default()
    })
    .await;
    let api_token = sim.token().await;
    for (method, path) in ADMIN_PATHS {
        for bearer in [
            None,
            Some(api_token.as_str()),
            Some("admin-token-012345678"),
            Some("admin-token-01234567890"),
        ] {
            let resp = sim.admin(method, path, bearer).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {bearer:?}"
            );
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let body = error_body(resp).await;
            assert_eq!(body.error, "invalid_admin_token");
            assert!(!body.message.contains(admin_token));
        }
    }
    assert_eq!(
        sim.handle.faults(),
        Faults::default(),
        "refused requests change nothing"
    );
    let resp = sim.admin("GET", "/_sim/stats", Some(admin_token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Stats>().await.unwrap().tokens_issued, 1);
    let resp = sim
        .http
        .put(sim.url("/_sim/faults"))
        .bearer_auth(admin_token)
        .json(&json!({"slowRate": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.handle.faults().slow_rate, 0.5);
    let resp = sim
        .admin("POST", "/_sim/tokens/revoke", Some(admin_token))
        .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
}

#[tokio::test]
async fn finished_jobs_are_forgotten_beyond_max_jobs() {
    let sim = start(SimulatorConfig {
        max_jobs: 3,
        job_duration: Duration::ZERO,
        ..config()
    })
    .await;
    let token = sim.token().await;
    let payload = guide_payload();
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = sim
            .submit(&token, &payload, Some(&format!("key-{i}")))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.push(resp.json::<SubmitResponse>().await.unwrap().job_id);
    }
    let stats = sim.stats_over_http().await;
    assert_eq!(stats.jobs.values().sum::<u64>(), 3);
    assert_eq!(stats.jobs_evicted, 2);
    assert_eq!(stats.idempotency_keys, 3);
    for old in &ids[..2] {
        let resp = sim.get(&token, &format!("{JOBS}/{old}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{old}");
    }
    for kept in &ids[2..] {
        sim.status(&token, kept).await;
    }
    // The forgotten job's key went with it: the same key makes a new job.
    let resp = sim.submit(&token, &payload, Some("key-0")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!ids.contains(&resp.json::<SubmitResponse>().await.unwrap().job_id));
    // A kept job's key still replays.
    let resp = sim.submit(&token, &payload, Some("key-4")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<SubmitResponse>().await.unwrap().job_id, ids[4]);
    assert_eq!(sim.handle.stats().jobs_created, 6);
}

#[tokio::test]
async fn a_store_full_of_running_jobs_refuses_new_ones() {
    let sim = start(SimulatorConfig {
        max_jobs: 2,
        job_duration: Duration::from_secs(600),
        ..config()
    })
    .await;
    let token = sim.token().await;
    let payload = guide_payload();
    let first = sim.submit_ok(&token, &payload).await;
    let second = sim.submit_ok(&token, &payload).await;
    let resp = sim.submit(&token, &payload, None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = error_body(resp).await;
    assert_eq!(body.error, "capacity_exceeded");
    assert!(body.message.contains("at most 2 jobs"), "{}", body.message);
    // Running jobs are never forgotten.
    sim.status(&token, &first).await;
    sim.status(&token, &second).await;
    // Once one finishes (here: is cancelled), it makes room.
    let resp = sim
        .http
        .post(sim.url(&format!("{JOBS}/{second}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    sim.submit_ok(&token, &payload).await;
    let resp = sim.get(&token, &format!("{JOBS}/{second}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    sim.status(&token, &first).await;
}

#[tokio::test]
async fn jobs_are_kept_within_a_memory_budget() {
    // Room (by memory) for about two guide jobs.
    let sim = start(SimulatorConfig {
        job_duration: Duration::ZERO,
        ..config()
    })
    .await;
    let token = sim.token().await;
    sim.submit_ok(&token, &guide_payload()).await;
    let one_job = sim.handle.stats().jobs_memory_bytes as usize;
    assert!(one_job > 1024, "{one_job}");
    let sim = start(SimulatorConfig {
        job_duration: Duration::ZERO,
        max_job_memory: one_job * 5 / 2,
        ..config()
    })
    .await;
    let token = sim.token().await;
    let ids = [
        sim.submit_ok(&token, &guide_payload()).await,
        sim.submit_ok(&token, &guide_payload()).await,
        sim.submit_ok(&token, &guide_payload()).await,
    ];
    let stats = sim.handle.stats();
    assert_eq!(stats.jobs.values().sum::<u64>(), 2);
    assert_eq!(stats.jobs_evicted, 1);
    assert_eq!(stats.jobs_memory_bytes as usize, 2 * one_job);
    let resp = sim.get(&token, &format!("{JOBS}/{}", ids[0])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    sim.status(&token, &ids[2]).await;

    // A job that alone needs more than the budget is refused as too large.
    let sim = start(SimulatorConfig {
        max_job_memory: one_job / 2,
        ..config()
    })
    .await;
    let token = sim.token().await;
    let resp = sim.submit(&token, &guide_payload(), None).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = error_body(resp).await;
    assert!(
        body.message.contains("--max-job-memory"),
        "{}",
        body.message
    );
    assert_eq!(sim.handle.stats().jobs_created, 0);
}

#[tokio::test]
async fn the_token_store_is_bounded() {
    let sim = start(SimulatorConfig {
        max_tokens: 20,
        ..config()
    })
    .await;
    let mut tokens = Vec::new();
    for _ in 0..50 {
        tokens.push(sim.token().await);
        assert!(sim.handle.stats().tokens_stored <= 20);
    }
    let stats = sim.handle.stats();
    assert_eq!(stats.tokens_issued, 50);
    assert!(stats.tokens_evicted >= 30, "{stats:?}");
    // The newest token works; the oldest was forgotten.
    let path = format!("{JOBS}/job-unknown");
    assert_eq!(
        sim.get(&tokens[49], &path).await.status(),
        StatusCode::NOT_FOUND
    );
    let resp = sim.get(&tokens[0], &path).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(error_body(resp).await.message.contains("not recognised"));
}

/// Sends a POST with `headers` and then `body_bytes` of body (chunked when no length is
/// declared), never finishing a chunked body; returns the status line and the response body.
async fn raw_post(
    addr: std::net::SocketAddr,
    headers: &str,
    chunked: bool,
    body_bytes: usize,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {JOBS} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}\r\n"
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            let framed = if chunked {
                let mut f = format!("{:x}\r\n", chunk.len()).into_bytes();
                f.extend_from_slice(&chunk);
                f.extend_from_slice(b"\r\n");
                f
            } else {
                chunk.clone()
            };
            // The server may stop reading and close once it has answered.
            if wr.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        // Keep the write half open (a chunked body is never finished) until the test ends.
        wr
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n")
                && let Some(len) = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                && body.len() >= len
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server answered before the body was complete");
    writer.abort();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[tokio::test]
async fn oversized_submissions_get_413_without_being_read_to_the_end() {
    let limit = 64 * 1024;
    let sim = start(SimulatorConfig {
        max_request_bytes: limit,
        ..config()
    })
    .await;
    let token = sim.token().await;
    let auth = format!("Authorization: Bearer {token}\r\n");

    // A chunked body that never ends: answered once it passes the limit.
    let (status, body) = raw_post(
        sim.handle.addr(),
        &format!("{auth}Transfer-Encoding: chunked\r\n"),
        true,
        usize::MAX,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let error: ApiErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(error.error, "payload_too_large");
    assert!(
        error.message.contains("65536 bytes") && error.message.contains("--max-request-bytes"),
        "{}",
        error.message
    );

    // A declared length above the limit: answered before any of the body is sent.
    let (status, body) = raw_post(
        sim.handle.addr(),
        &format!("{auth}Content-Length: {}\r\n", 1u64 << 40),
        false,
        0,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(body.contains("payload_too_large"), "{body}");

    // Just under the limit is read (and then rejected as not being a job, 400).
    let mut small = guide_payload();
    small["skillId"] = json!("x".repeat(limit - 1024));
    let resp = sim.submit(&token, &small, None).await;
    assert_ne!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut big = guide_payload();
    big["skillId"] = json!("x".repeat(limit));
    let resp = sim.submit(&token, &big, None).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sim.handle.stats().count("submit", 413), 3);
    // The budget was given back: a normal submission still goes through at once.
    tokio::time::timeout(DEADLINE, sim.submit_ok(&token, &guide_payload()))
        .await
        .unwrap();
}
