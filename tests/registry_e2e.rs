//! Registration end to end: the operator binary against a real kube-apiserver, the CXone
//! simulator and real registries (MLflow 3.17.2 from `hack/mlflow-venv.sh`, the distribution
//! registry from `hack/oci-tools.sh`), checked with independent clients (MLflow's own Python
//! client, `oras`).

mod support;

use std::time::Duration;

use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::cxone::{
    ClientConfig, Credentials, CxoneClient, Endpoint, SecretString, Target,
};
use cxone_skill_operator::simulator::SimulatorConfig;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::mlflow::{basic_auth_server, server, unique_name};
use support::operator::{CLIENT_ID, CLIENT_SECRET, World, condition, guide_job, phase};

const T: Duration = Duration::from_secs(120);

fn sim() -> SimulatorConfig {
    SimulatorConfig {
        job_duration: Duration::from_millis(300),
        ..SimulatorConfig::default()
    }
}

async fn world(prefix: &str, config: SimulatorConfig, registries: &[&str]) -> World {
    let mut w = World::new(prefix, config).await;
    w.put_secret("cxone-credentials", CLIENT_ID, CLIENT_SECRET)
        .await;
    let allowed = format!("--allowed-registries={}", registries.join(","));
    w.start_operator(&[allowed.as_str()]);
    w
}

/// Two labels the simulator's classifier cannot tell apart on held-out text: accuracy 0.5.
fn confusable(name: &str, sim_url: &str, registry: Value) -> Value {
    let mut job = guide_job(name, sim_url, json!({ "registry": registry }));
    job["spec"]["labels"] =
        json!([{"id": "cancel_sub", "name": "Cancel"}, {"id": "upgrade_plan", "name": "Upgrade"}]);
    job["spec"]["utterances"] = json!([
        {"text": "x alpha", "label": "cancel_sub"}, {"text": "x bravo", "label": "cancel_sub"},
        {"text": "x charlie", "label": "cancel_sub"}, {"text": "x delta", "label": "upgrade_plan"},
        {"text": "x echo", "label": "upgrade_plan"}, {"text": "x foxtrot", "label": "upgrade_plan"}
    ]);
    job
}

fn succeeded(j: &SkillTrainingJob) -> bool {
    phase(j) == Some(Phase::Succeeded)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The files CXone serves for `job_id` (a fresh export), by file name, as sha256.
async fn served_files(w: &World, job_id: &str) -> (String, String) {
    let client = CxoneClient::new(ClientConfig::default()).unwrap();
    let endpoint = Endpoint::new(&w.sim_url(), None).unwrap();
    let creds = Credentials {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::new(CLIENT_SECRET),
        version: "e2e".into(),
    };
    let target = Target {
        endpoint: &endpoint,
        credentials: &creds,
    };
    let export = client.export(target, job_id).await.unwrap();
    let get = |url: String| async move {
        reqwest::get(url)
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    (
        sha256(&get(export.artifacts.model_weights_url).await),
        sha256(&get(export.artifacts.config_url).await),
    )
}

async fn audit(w: &World, job: &SkillTrainingJob) -> Value {
    let name = &job
        .status
        .as_ref()
        .unwrap()
        .audit
        .as_ref()
        .unwrap()
        .config_map;
    let cm = Api::<ConfigMap>::namespaced(w.ns.client(), w.ns.name())
        .get(name)
        .await
        .unwrap();
    serde_json::from_str(&cm.data.unwrap()["audit.json"]).unwrap()
}

async fn events(w: &World) -> String {
    Api::<Event>::namespaced(w.ns.client(), w.ns.name())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| {
            format!(
                "{} {}\n",
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlflow_registration_is_checked_by_mlflows_own_client() {
    let ml = server().await;
    let w = world("ml-ok", sim(), &[ml.url()]).await;
    let model = unique_name("billing");
    let registry = json!({
        "mlflow": {"trackingUri": ml.url(), "modelName": model},
        "promotion": {"minAccuracy": 0.0, "compareMetric": "macroF1", "mlflowAlias": "champion"}
    });
    w.create_job(guide_job(
        "ml-ok",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let done = w.wait_job("ml-ok", T, "Succeeded", succeeded).await;
    let st = done.status.clone().unwrap();
    let job_id = st.job_id.clone().unwrap();
    let reg = st.registry.clone().unwrap().mlflow.unwrap();
    assert_eq!(reg.promoted, Some(true), "{reg:?}");
    assert_eq!(reg.promoted_as.as_deref(), Some("champion"));
    assert_eq!(reg.reference, format!("models:/{model}/{}", reg.version));
    let registered = condition(&done, "Registered").unwrap();
    assert_eq!(
        (registered.status.as_str(), registered.reason.as_str()),
        ("True", "Promoted")
    );

    let seen = tokio::task::block_in_place(|| ml.check(&model, &job_id, Some("champion")));
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["versions"][0]["version"], reg.version.as_str());
    assert_eq!(seen["alias"]["version"], reg.version.as_str());
    let run = &seen["runs"][0];
    assert_eq!(run["status"], "FINISHED");
    let accuracy = st.evaluation.as_ref().unwrap().accuracy.clone();
    let logged = run["metrics"]["accuracy"].as_f64().unwrap();
    assert!((logged - accuracy.parse::<f64>().unwrap()).abs() < 1e-4);
    assert_eq!(
        run["params"]["dataset_digest"],
        st.dataset_digest.clone().unwrap()
    );
    let (weights, config) = served_files(&w, &job_id).await;
    assert_eq!(seen["model_files"]["model-weights.json"], weights.as_str());
    assert_eq!(seen["model_files"]["model-config.json"], config.as_str());
    for file in ["evaluation.json", "audit.json", "evaluation.svg"] {
        assert!(seen["run_files"].get(file).is_some(), "{file}: {seen}");
    }
    let record = audit(&w, &done).await;
    assert_eq!(record["registry"]["targets"][0]["promoted"], true);
    assert_eq!(
        record["registry"]["targets"][0]["reference"],
        reg.reference.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_below_the_gate_is_registered_not_promoted_and_the_audit_says_why() {
    let ml = server().await;
    let w = world("ml-gate", sim(), &[ml.url()]).await;
    let model = unique_name("gate");
    let registry = json!({
        "mlflow": {"trackingUri": ml.url(), "modelName": model},
        "promotion": {"minAccuracy": 0.9}
    });
    w.create_job(confusable("gate", &w.sim_url(), registry))
        .await;
    let done = w.wait_job("gate", T, "Succeeded", succeeded).await;
    let st = done.status.clone().unwrap();
    let reg = st.registry.unwrap().mlflow.unwrap();
    assert_eq!(reg.promoted, Some(false));
    let gate = reg.gate.unwrap();
    assert!(
        gate.contains("accuracy 0.5000 (needs 0.9000) FAILED"),
        "{gate}"
    );
    let registered = condition(&done, "Registered").unwrap();
    assert_eq!(registered.reason, "GateNotMet");
    let seen = tokio::task::block_in_place(|| {
        ml.check(&model, st.job_id.as_deref().unwrap(), Some("champion"))
    });
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1);
    assert!(seen["alias"].is_null(), "not promoted: {seen}");
    let record = audit(&w, &done).await;
    assert_eq!(record["registry"]["promotion"]["minAccuracy"], 0.9);
    assert_eq!(record["registry"]["inputs"]["accuracy"], 0.5);
    assert_eq!(record["registry"]["targets"][0]["promoted"], false);
    assert!(
        record["registry"]["targets"][0]["gate"]
            .as_str()
            .unwrap()
            .contains("FAILED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_say_so_and_leak_nothing() {
    let ml = basic_auth_server().await;
    let w = world("ml-auth", sim(), &[ml.url()]).await;
    let password = "not-the-password-7f3a9c";
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": "mlflow-credentials"},
        "stringData": {"username": "admin", "password": password}
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.ns.client(), w.ns.name())
        .patch(
            "mlflow-credentials",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let registry = json!({"mlflow": {
        "trackingUri": ml.url(), "modelName": unique_name("auth"),
        "credentialsSecretRef": {"name": "mlflow-credentials"}
    }});
    w.create_job(guide_job(
        "auth",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let stuck = w
        .wait_job("auth", T, "Registered=False RegistryAuthFailed", |j| {
            condition(j, "Registered").is_some_and(|c| c.reason == "RegistryAuthFailed")
        })
        .await;
    assert_eq!(phase(&stuck), Some(Phase::Registering));
    let message = condition(&stuck, "Registered").unwrap().message.clone();
    assert!(
        message.contains("401") || message.contains("403"),
        "{message}"
    );
    let events = events(&w).await;
    assert!(events.contains("RegistryAuthFailed"), "{events}");
    let status = serde_json::to_string(&stuck.status).unwrap();
    for text in [&status, &events, &w.operator_log()] {
        assert!(!text.contains(password), "the password leaked");
        assert!(!text.contains("signature="), "a signed URL leaked");
    }
    // The right password: registration resumes when the Secret changes.
    let right = ml.admin_password().unwrap().to_string();
    Api::<Secret>::namespaced(w.ns.client(), w.ns.name())
        .patch(
            "mlflow-credentials",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                "metadata": {"name": "mlflow-credentials"},
                "stringData": {"username": "admin", "password": right}
            })),
        )
        .await
        .unwrap();
    w.wait_job("auth", T, "Succeeded after the fix", succeeded)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outside_the_allowlist_is_refused_before_anything_is_sent() {
    let ml = server().await;
    let w = world("ml-deny", sim(), &["https://mlflow.example.com"]).await;
    let model = unique_name("deny");
    let registry = json!({"mlflow": {"trackingUri": ml.url(), "modelName": model}});
    w.create_job(guide_job(
        "deny",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let invalid = w
        .wait_job("deny", T, "Invalid", |j| phase(j) == Some(Phase::Invalid))
        .await;
    let validated = condition(&invalid, "Validated").unwrap();
    assert_eq!(validated.reason, "RegistryNotAllowed");
    assert!(
        validated.message.contains("is not an allowed registry"),
        "{}",
        validated.message
    );
    assert_eq!(w.sim.stats().total("submit"), 0, "nothing trained");
    let seen = tokio::task::block_in_place(|| ml.check(&model, "none", None));
    assert!(seen["versions"].as_array().unwrap().is_empty());
}
