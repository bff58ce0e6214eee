//! The MLflow registry client against a real MLflow server (`tests/support/mlflow.rs`), with the
//! model files served by the CXone simulator's signed URLs, checked with MLflow's own Python
//! client (`hack/mlflow_check.py`).

mod support {
    pub mod mlflow;
}

use std::collections::BTreeMap;
use std::time::Duration;

use cxone_skill_operator::cxone::model::{
    Hyperparameters, JobState, LabelDef, TrainingJobRequest, Utterance,
};
use cxone_skill_operator::cxone::{
    ClientConfig, Credentials, CxoneClient, Endpoint, SecretString, Target,
};
use cxone_skill_operator::evaluation::{EvaluationOptions, EvaluationReport, analyze};
use cxone_skill_operator::registry::mlflow::{JOB_ID_TAG, Mlflow, MlflowTarget};
use cxone_skill_operator::registry::{
    AUDIT_FILE, CONFIG_FILE, Documents, EVALUATION_FILE, ModelSource, PICTURE_FILE, Provenance,
    RegistryAuth, RegistryError, WEIGHTS_FILE, key_metrics, picture,
};
use cxone_skill_operator::simulator::{self, SimulatorConfig, SimulatorHandle};
use cxone_skill_operator::testkit;
use cxone_skill_operator::training::{Dataset, ValidationRules, build_payload, validate};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::mlflow::{ADMIN_USER, MlflowServer, basic_auth_server, server, unique_name};

/// A completed CXone job on a simulator of its own, with its export and what it served.
struct TrainedJob {
    /// Keeps the simulator (and its signed URLs) alive.
    _sim: SimulatorHandle,
    job_id: String,
    source: ModelSource,
    report: EvaluationReport,
    weights_sha256: String,
    config_sha256: String,
}

impl TrainedJob {
    async fn new() -> Self {
        let config = SimulatorConfig {
            job_duration: Duration::from_millis(100),
            ..SimulatorConfig::default()
        };
        let creds = Credentials {
            client_id: config.clients[0].client_id.clone(),
            client_secret: SecretString::new(config.clients[0].client_secret.clone()),
            version: "1".into(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = simulator::spawn(config, listener).await.unwrap();
        let endpoint = Endpoint::new(&sim.base_url(), None).unwrap();
        let client = CxoneClient::new(ClientConfig::default()).unwrap();
        let target = Target {
            endpoint: &endpoint,
            credentials: &creds,
        };
        let job_id = client
            .submit(target, &request(), &unique_name("key"))
            .await
            .unwrap()
            .job_id;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = client.status(target, &job_id).await.unwrap();
            if s.status.is_terminal() {
                assert_eq!(s.status, JobState::Completed);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "job stuck");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let evaluation = client.evaluation(target, &job_id).await.unwrap();
        let report = analyze(&evaluation, &EvaluationOptions::default()).unwrap();
        let export = client.export(target, &job_id).await.unwrap();
        let source = ModelSource {
            weights_url: export.artifacts.model_weights_url,
            config_url: export.artifacts.config_url,
        };
        let weights_sha256 = sha256(&download(&source.weights_url).await);
        let config_sha256 = sha256(&download(&source.config_url).await);
        Self {
            _sim: sim,
            job_id,
            source,
            report,
            weights_sha256,
            config_sha256,
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = key_metrics(&self.report);
        m.insert("f1 @ recommended".into(), 0.5);
        m
    }

    fn documents(&self) -> Documents {
        Documents {
            evaluation_json: serde_json::to_vec(&self.report).unwrap(),
            audit_json: br#"{"kind":"audit","test":true}"#.to_vec(),
            picture_svg: picture::render(&self.report).into_bytes(),
            ..Documents::default()
        }
    }

    fn provenance(&self, job_id: &str) -> Provenance {
        Provenance {
            name: "intents".into(),
            uid: "6b1f3c2e-0000-4000-8000-000000000001".into(),
            dataset_digest: format!("sha256:{}", "5a".repeat(32)),
            created: jiff::Timestamp::from_second(1_767_225_600).unwrap(),
            source: "kubernetes://team-a/skilltrainingjobs/intents".into(),
            params: [
                ("epochs".to_string(), "10".to_string()),
                ("learning_rate".to_string(), "0.001".to_string()),
            ]
            .into_iter()
            .collect(),
            ..testkit::provenance(job_id)
        }
    }
}

fn request() -> TrainingJobRequest {
    let labels = [("cancel_sub", "Cancel"), ("upgrade_plan", "Upgrade")]
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
            ("Stop billing me", "cancel_sub"),
            ("How do I upgrade my plan", "upgrade_plan"),
            ("I need a higher tier", "upgrade_plan"),
            ("Give me the premium plan", "upgrade_plan"),
        ]
        .iter()
        .map(|(text, label)| Utterance {
            text: text.to_string(),
            label: label.to_string(),
            language: None,
        }),
    );
    let valid = validate(d, &ValidationRules::default()).unwrap();
    build_payload("skill-abc-123", &valid, 0.34, &Hyperparameters::default()).0
}

async fn download(url: &str) -> Vec<u8> {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn target(server: &MlflowServer, model: &str) -> MlflowTarget {
    MlflowTarget {
        tracking_uri: server.url().to_string(),
        model_name: model.to_string(),
        experiment_name: unique_name("cxone-exp"),
    }
}

fn admin(server: &MlflowServer) -> RegistryAuth {
    RegistryAuth::Basic {
        username: ADMIN_USER.into(),
        password: server.admin_password().unwrap().into(),
    }
}

async fn check(
    server: &'static MlflowServer,
    model: &str,
    job: &str,
    alias: Option<&str>,
) -> Value {
    let (model, job, alias) = (model.to_string(), job.to_string(), alias.map(String::from));
    tokio::task::spawn_blocking(move || server.check(&model, &job, alias.as_deref()))
        .await
        .unwrap()
}

fn close(a: f64, b: &Value) -> bool {
    b.as_f64().is_some_and(|b| (a - b).abs() < 1e-12)
}

#[tokio::test]
async fn registers_with_provenance_then_alias_and_champion() {
    let mlflow = server().await;
    let job = TrainedJob::new().await;
    // Quotes, a backslash and LIKE wildcards: the client's filters must still find exactly this
    // model (the server cannot escape a quote in a filter).
    let model = unique_name(r#"cxone it's "odd" \ %_"#);
    let target = target(mlflow, &model);
    let auth = RegistryAuth::Anonymous;
    let client = Mlflow::new().unwrap();
    let provenance = job.provenance(&job.job_id);
    let metrics = job.metrics();
    let documents = job.documents();

    let registered = client
        .register(
            &target,
            &auth,
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mlflow.log_tail()));
    assert!(registered.created);
    assert_eq!(registered.version, "1");
    // MLflow 3: the version is made from the run's LoggedModel.
    assert!(registered.model_id.starts_with("m-"), "{registered:?}");
    assert_eq!(
        registered.source,
        format!("models:/{}", registered.model_id)
    );

    let seen = check(mlflow, &model, &job.job_id, None).await;
    let versions = seen["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{seen}");
    assert_eq!(versions[0]["version"], registered.version);
    assert_eq!(versions[0]["run_id"], registered.run_id);
    assert_eq!(versions[0]["source"], registered.source);
    assert_eq!(versions[0]["status"], "READY");
    assert_eq!(versions[0]["tags"][JOB_ID_TAG], job.job_id);
    // MLflow 3.17's SQL registry keeps no model_id column: the version names its LoggedModel by
    // its source, and the LoggedModel lists the version (what MLflow's UI links both ways).
    assert_eq!(
        versions[0]["source"],
        format!("models:/{}", registered.model_id)
    );
    let logged = &seen["logged_model"];
    assert_eq!(logged["model_id"], registered.model_id);
    assert_eq!(logged["status"], "READY", "{logged}");
    assert_eq!(logged["source_run_id"], registered.run_id);
    assert_eq!(
        logged["params"]["dataset_digest"],
        provenance.dataset_digest
    );
    assert_eq!(logged["tags"][JOB_ID_TAG], job.job_id);
    let linked: serde_json::Value = serde_json::from_str(
        logged["tags"]["mlflow.modelVersions"]
            .as_str()
            .unwrap_or_else(|| panic!("no mlflow.modelVersions tag: {logged}")),
    )
    .unwrap();
    assert_eq!(
        linked,
        serde_json::json!([{"name": model, "version": registered.version.parse::<u64>().unwrap()}])
    );
    for (key, value) in key_metrics(&job.report) {
        assert!(
            close(value, &logged["metrics"][&key]),
            "the model's {key}: {}",
            logged["metrics"]
        );
    }

    let runs = seen["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{seen}");
    let run = &runs[0];
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["params"]["dataset_digest"], provenance.dataset_digest);
    assert_eq!(run["params"]["epochs"], "10");
    assert_eq!(run["params"]["learning_rate"], "0.001");
    for (key, value) in key_metrics(&job.report) {
        assert!(
            close(value, &run["metrics"][&key]),
            "{key}: {}",
            run["metrics"]
        );
    }
    assert!(
        close(0.5, &run["metrics"]["f1 _ recommended"]),
        "{}",
        run["metrics"]
    );
    let tags = &run["tags"];
    assert_eq!(tags[JOB_ID_TAG], job.job_id);
    assert_eq!(tags["cxone.namespace"], "team-a");
    assert_eq!(tags["cxone.name"], "intents");
    assert_eq!(tags["cxone.uid"], provenance.uid);
    assert_eq!(tags["cxone.generation"], "4");
    assert_eq!(tags["cxone.run"], "2");
    assert_eq!(tags["cxone.skill_id"], "skill-abc-123");
    assert_eq!(tags["cxone.dataset_digest"], provenance.dataset_digest);
    assert_eq!(tags["cxone.source"], provenance.source);
    assert_eq!(tags["mlflow.runName"], "intents-2");

    // The version's source (the LoggedModel) holds exactly the model files, byte for byte what
    // the signed URLs served; the run holds the documents.
    let model_files = &seen["model_files"];
    assert_eq!(model_files.as_object().unwrap().len(), 2, "{model_files}");
    assert_eq!(model_files[WEIGHTS_FILE], job.weights_sha256);
    assert_eq!(model_files[CONFIG_FILE], job.config_sha256);
    let run_files = &seen["run_files"];
    assert_eq!(run_files.as_object().unwrap().len(), 3, "{run_files}");
    assert_eq!(
        run_files[EVALUATION_FILE],
        sha256(&documents.evaluation_json)
    );
    assert_eq!(run_files[AUDIT_FILE], sha256(&documents.audit_json));
    assert_eq!(run_files[PICTURE_FILE], sha256(&documents.picture_svg));

    // No alias yet: no champion.
    assert_eq!(
        client.champion(&target, &auth, "champion").await.unwrap(),
        None
    );

    client
        .set_alias(&target, &auth, "champion", &registered.version)
        .await
        .unwrap();
    let seen = check(mlflow, &model, &job.job_id, Some("champion")).await;
    assert_eq!(seen["alias"]["version"], registered.version);
    assert_eq!(seen["alias"]["run_id"], registered.run_id);

    let champion = client
        .champion(&target, &auth, "champion")
        .await
        .unwrap()
        .expect("the alias resolves");
    assert_eq!(champion.reference, registered.version);
    for (key, value) in key_metrics(&job.report) {
        let got = champion.metrics.get(&key).copied();
        assert!(
            got.is_some_and(|g| (g - value).abs() < 1e-12),
            "{key}: {got:?}"
        );
    }

    // Another alias is not this one; a model that does not exist has no champion.
    assert_eq!(
        client.champion(&target, &auth, "other").await.unwrap(),
        None
    );
    let missing = MlflowTarget {
        model_name: unique_name("no-such-model"),
        ..target.clone()
    };
    assert_eq!(
        client.champion(&missing, &auth, "champion").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn registers_once_per_job() {
    let mlflow = server().await;
    let job = TrainedJob::new().await;
    let model = unique_name("cxone-once");
    let target = target(mlflow, &model);
    let auth = RegistryAuth::Anonymous;
    let client = Mlflow::new().unwrap();
    // A job id the filter cannot quote as it is.
    let job_id = format!(r"{}'\%_", job.job_id);
    let provenance = job.provenance(&job_id);
    let (metrics, documents) = (job.metrics(), job.documents());

    let first = client
        .register(
            &target,
            &auth,
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mlflow.log_tail()));
    let second = client
        .register(
            &target,
            &auth,
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(
        (&second.version, &second.run_id, &second.source),
        (&first.version, &first.run_id, &first.source)
    );
    let seen = check(mlflow, &model, &job_id, None).await;
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["runs"].as_array().unwrap().len(), 1, "{seen}");

    // A job id that only matches the first one's LIKE pattern is another job.
    let similar = format!("{}x_%_", job.job_id);
    let third = client
        .register(
            &target,
            &auth,
            &job.source,
            &job.provenance(&similar),
            &metrics,
            &documents,
        )
        .await
        .unwrap();
    assert!(third.created);
    assert_eq!(third.version, "2");
    assert_ne!(third.run_id, first.run_id);
    // The first job's search now also matches the similar one's version: only the exact
    // comparison tells them apart.
    let fourth = client
        .register(
            &target,
            &auth,
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap();
    assert!(!fourth.created);
    assert_eq!(fourth.version, "1");
}

#[tokio::test]
async fn an_expired_source_is_reported_and_the_retry_reuses_the_run() {
    let mlflow = server().await;
    let job = TrainedJob::new().await;
    let model = unique_name("cxone-expired");
    let target = target(mlflow, &model);
    let auth = RegistryAuth::Anonymous;
    let client = Mlflow::new().unwrap();
    let provenance = job.provenance(&job.job_id);
    let (metrics, documents) = (job.metrics(), job.documents());

    // A tampered signature is refused by the source (403), like an expired one.
    let secret_part = "signature=0000deadbeef";
    let tampered = ModelSource {
        weights_url: job.source.weights_url.clone(),
        config_url: format!(
            "{}&{secret_part}",
            job.source.config_url.split("&signature=").next().unwrap()
        ),
    };
    let e = client
        .register(&target, &auth, &tampered, &provenance, &metrics, &documents)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::SourceExpired(_)), "{e:?}");
    assert!(e.retryable());
    let text = e.to_string();
    assert!(
        !text.contains("signature") && !text.contains("expires="),
        "{text}"
    );
    assert!(!text.contains("deadbeef"), "{text}");

    // No version yet; the run the attempt created is finished by the retry, not duplicated.
    let seen = check(mlflow, &model, &job.job_id, None).await;
    assert_eq!(seen["versions"].as_array().unwrap().len(), 0, "{seen}");

    let registered = client
        .register(
            &target,
            &auth,
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap();
    assert!(registered.created);
    let seen = check(mlflow, &model, &job.job_id, None).await;
    let runs = seen["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{seen}");
    assert_eq!(runs[0]["run_id"], registered.run_id);
    assert_eq!(runs[0]["status"], "FINISHED");
    assert_eq!(seen["model_files"][WEIGHTS_FILE], job.weights_sha256);
    assert_eq!(seen["model_files"][CONFIG_FILE], job.config_sha256);

    // A URL that was never signed by the source at all.
    let unsigned = ModelSource {
        weights_url: job
            .source
            .weights_url
            .split('?')
            .next()
            .unwrap()
            .to_string(),
        config_url: job.source.config_url.clone(),
    };
    let other = MlflowTarget {
        model_name: unique_name("cxone-unsigned"),
        ..target.clone()
    };
    let e = client
        .register(&other, &auth, &unsigned, &provenance, &metrics, &documents)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::SourceExpired(_)), "{e:?}");
}

#[tokio::test]
async fn basic_auth_credentials_are_used_and_refusals_classified() {
    let mlflow = basic_auth_server().await;
    let job = TrainedJob::new().await;
    let model = unique_name("cxone-auth");
    let target = target(mlflow, &model);
    let client = Mlflow::new().unwrap();
    let provenance = job.provenance(&job.job_id);
    let (metrics, documents) = (job.metrics(), job.documents());

    let registered = client
        .register(
            &target,
            &admin(mlflow),
            &job.source,
            &provenance,
            &metrics,
            &documents,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mlflow.log_tail()));
    assert!(registered.created);
    client
        .set_alias(&target, &admin(mlflow), "champion", &registered.version)
        .await
        .unwrap();
    let champion = client
        .champion(&target, &admin(mlflow), "champion")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(champion.reference, registered.version);
    let seen = check(mlflow, &model, &job.job_id, Some("champion")).await;
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["model_files"][WEIGHTS_FILE], job.weights_sha256);
    assert_eq!(seen["alias"]["version"], registered.version);

    let wrong_password = "not-the-Passw0rd-42";
    let wrong = RegistryAuth::Basic {
        username: ADMIN_USER.into(),
        password: wrong_password.into(),
    };
    let bearer = RegistryAuth::Bearer {
        token: "tok-not-valid-123".into(),
    };
    for auth in [wrong, bearer, RegistryAuth::Anonymous] {
        let e = client
            .register(
                &target,
                &auth,
                &job.source,
                &provenance,
                &metrics,
                &documents,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Auth(_)), "{auth:?}: {e:?}");
        assert!(!e.retryable());
        let text = e.to_string();
        assert!(text.contains("registered-models/create"), "{text}");
        for secret in [
            wrong_password,
            "tok-not-valid-123",
            mlflow.admin_password().unwrap(),
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        let e = client
            .champion(&target, &auth, "champion")
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Auth(_)), "{auth:?}: {e:?}");
        let e = client
            .set_alias(&target, &auth, "champion", "1")
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Auth(_)), "{auth:?}: {e:?}");
    }
}

#[tokio::test]
async fn a_server_that_is_not_running_is_unreachable() {
    let job = TrainedJob::new().await;
    let port = support::mlflow::unused_port();
    let target = MlflowTarget {
        tracking_uri: format!("http://127.0.0.1:{port}/prefix"),
        model_name: "m".into(),
        experiment_name: "e".into(),
    };
    let client = Mlflow::new().unwrap();
    let auth = RegistryAuth::Basic {
        username: "u".into(),
        password: "hunter2-secret".into(),
    };
    let e = client
        .register(
            &target,
            &auth,
            &job.source,
            &job.provenance(&job.job_id),
            &job.metrics(),
            &job.documents(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable(_)), "{e:?}");
    assert!(e.retryable());
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = client
        .champion(&target, &auth, "champion")
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable(_)), "{e:?}");
    let e = client
        .set_alias(&target, &auth, "champion", "1")
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable(_)), "{e:?}");
}

#[tokio::test]
async fn a_wrong_path_prefix_is_rejected_with_a_hint() {
    let mlflow = server().await;
    let job = TrainedJob::new().await;
    let target = MlflowTarget {
        tracking_uri: format!("{}/not-mlflow", mlflow.url()),
        model_name: unique_name("cxone-prefix"),
        experiment_name: unique_name("cxone-exp"),
    };
    let client = Mlflow::new().unwrap();
    let auth = RegistryAuth::Anonymous;
    let e = client
        .register(
            &target,
            &auth,
            &job.source,
            &job.provenance(&job.job_id),
            &job.metrics(),
            &job.documents(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Rejected(_)), "{e:?}");
    assert!(!e.retryable());
    let text = e.to_string();
    assert!(
        text.contains("/not-mlflow/api/2.0/mlflow/registered-models/create")
            && text.contains("HTTP 404"),
        "{text}"
    );
    assert!(text.contains("path prefix"), "{text}");
}
