//! Registration end to end: the operator binary against a real kube-apiserver, the CXone
//! simulator and real registries (MLflow 3.17.2 from `hack/mlflow-venv.sh`, the distribution
//! registry from `hack/oci-tools.sh`), checked with independent clients (MLflow's own Python
//! client, `oras`).

mod support {
    mod envtest;
    pub mod mlflow;
    pub mod model_signing;
    pub mod oci_registry;
    pub mod operator;
}

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

use support::oci_registry::TestRegistry;

/// `oras manifest fetch` of `reference`, as JSON.
fn manifest(registry: &TestRegistry, reference: &str) -> Value {
    let out = registry.oras(&["manifest", "fetch", reference]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The repository's tags, as `oras repo tags` lists them.
fn tags(registry: &TestRegistry, repository: &str) -> Vec<String> {
    let out = registry.oras(&["repo", "tags", &registry.reference(repository)]);
    let mut tags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_registries_to_succeeded_checked_by_oras_and_mlflow() {
    let ml = server().await;
    let oci = TestRegistry::start().await;
    let allowed = format!("http://{}", oci.host());
    let w = world("both", sim(), &[ml.url(), &allowed]).await;
    let model = unique_name("both");
    let repository = "cxone/billing-support";
    let registry = json!({
        "oci": {"repository": oci.reference(repository)},
        "mlflow": {"trackingUri": ml.url(), "modelName": model},
        "promotion": {"minAccuracy": 0.0}
    });
    w.create_job(guide_job(
        "both",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let done = w.wait_job("both", T, "Succeeded", succeeded).await;
    let st = done.status.clone().unwrap();
    let job_id = st.job_id.clone().unwrap();
    let reg = st.registry.clone().unwrap();
    let pushed = reg.oci.clone().unwrap();
    assert_eq!(pushed.promoted, Some(true));
    assert_eq!(pushed.promoted_as.as_deref(), Some("approved"));
    assert_eq!(
        pushed.reference,
        format!("{}@{}", oci.reference(repository), pushed.version)
    );
    assert_eq!(reg.mlflow.clone().unwrap().promoted, Some(true));

    // What oras sees: a ModelPack manifest with the provenance, the files CXone served, the
    // evaluation as a referrer, and the promotion tag on the same manifest.
    let m = manifest(&oci, &pushed.reference);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let a = &m["annotations"];
    assert_eq!(a["io.cxone.ai.job-id"], job_id.as_str());
    assert_eq!(a["io.cxone.ai.namespace"], w.ns.name());
    assert_eq!(
        a["io.cxone.ai.dataset-digest"],
        st.dataset_digest.clone().unwrap()
    );
    assert!(a["org.opencontainers.image.created"].is_string());
    assert!(a["io.cxone.ai.metrics.macro_f1"].is_string());
    let (weights, config) = served_files(&w, &job_id).await;
    let layers = m["layers"].as_array().unwrap();
    let layer = |media: &str| {
        layers
            .iter()
            .find(|l| l["mediaType"] == media)
            .unwrap_or_else(|| panic!("no {media} layer: {m}"))
            .clone()
    };
    let w_layer = layer("application/vnd.cncf.model.weight.v1.raw");
    let c_layer = layer("application/vnd.cncf.model.weight.config.v1.raw");
    assert_eq!(w_layer["digest"], format!("sha256:{weights}"));
    assert_eq!(c_layer["digest"], format!("sha256:{config}"));
    assert_eq!(
        w_layer["annotations"]["org.cncf.model.filepath"],
        "model-weights.json"
    );
    let blob = oci.oras(&[
        "blob",
        "fetch",
        "--output",
        "-",
        &format!("{}@sha256:{weights}", oci.reference(repository)),
    ]);
    assert_eq!(sha256(&blob.stdout), weights);
    let approved = manifest(&oci, &oci.reference(&format!("{repository}:approved")));
    assert_eq!(approved, m, "the promotion tag names the same manifest");
    let discovered = oci.oras(&["discover", "--format", "json", &pushed.reference]);
    let discovered = String::from_utf8_lossy(&discovered.stdout);
    assert!(
        discovered.contains("application/vnd.cxone.ai.evaluation"),
        "{discovered}"
    );
    let seen = tokio::task::block_in_place(|| ml.check(&model, &job_id, Some("champion")));
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1);
    assert_eq!(seen["model_files"]["model-weights.json"], weights.as_str());
    let record = audit(&w, &done).await;
    let targets = record["registry"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0]["reference"], pushed.reference.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_registration_ends_with_one_version_and_one_manifest() {
    let ml = server().await;
    let oci = TestRegistry::start().await;
    let allowed = format!("http://{}", oci.host());
    // Weights big enough that the copy is still running when the operator is killed.
    let config = SimulatorConfig {
        artifact_weights_bytes: Some(96 << 20),
        ..sim()
    };
    let mut w = world("kill-reg", config, &[ml.url(), &allowed]).await;
    let model = unique_name("kill");
    let repository = "cxone/kill";
    let registry = json!({
        "oci": {"repository": oci.reference(repository), "tag": "run"},
        "mlflow": {"trackingUri": ml.url(), "modelName": model},
    });
    w.create_job(guide_job(
        "kill",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    w.wait_job("kill", T, "Registering", |j| {
        phase(j) == Some(Phase::Registering)
    })
    .await;
    w.operator.as_mut().unwrap().kill();
    let allowed_flag = format!("--allowed-registries={},{allowed}", ml.url());
    w.start_operator(&[allowed_flag.as_str()]);
    let done = w.wait_job("kill", T, "Succeeded", succeeded).await;
    let st = done.status.unwrap();
    let job_id = st.job_id.unwrap();
    let seen = tokio::task::block_in_place(|| ml.check(&model, &job_id, None));
    assert_eq!(
        seen["versions"].as_array().unwrap().len(),
        1,
        "one MLflow version: {seen}"
    );
    let model_tags: Vec<String> = tags(&oci, repository)
        .into_iter()
        .filter(|t| !t.starts_with("sha256-"))
        .collect();
    assert_eq!(model_tags, vec!["run".to_string()], "one model manifest");
    let pushed = st.registry.unwrap().oci.unwrap();
    let m = manifest(&oci, &oci.reference(&format!("{repository}:run")));
    assert_eq!(
        m,
        manifest(&oci, &pushed.reference),
        "the tag names what status records"
    );
    let weights = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.cncf.model.weight.v1.raw")
        .unwrap()
        .clone();
    assert_eq!(weights["size"].as_u64(), Some(96 << 20), "the whole file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_that_expired_before_the_copy_is_exported_again() {
    let oci = TestRegistry::start().await;
    let allowed = format!("http://{}", oci.host());
    let w = world("expired", sim(), &[&allowed]).await;
    // The first download of an artifact URL is refused as expired.
    w.sim.set_faults(cxone_skill_operator::simulator::Faults {
        expire_artifact_downloads: 1,
        ..Default::default()
    });
    let repository = "cxone/expired";
    let registry = json!({"oci": {"repository": oci.reference(repository)}});
    w.create_job(guide_job(
        "expired",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let done = w.wait_job("expired", T, "Succeeded", succeeded).await;
    assert_eq!(
        w.sim.stats().total("export"),
        2,
        "exported once after training, once more for fresh URLs"
    );
    let pushed = done.status.unwrap().registry.unwrap().oci.unwrap();
    manifest(&oci, &pushed.reference);
}

/// Whether the test key's signature verifies on `dir` (tests/support/model_signing.rs), and
/// what the verifier said.
fn model_signing_verifies(signature: &std::path::Path, dir: &std::path::Path) -> (bool, String) {
    let out = support::model_signing::verify(
        &support::model_signing::key_file("test-key.pub.pem"),
        signature,
        dir,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_model_with_its_card_verifies_from_oras_and_from_mlflow() {
    let ml = server().await;
    let oci = TestRegistry::start().await;
    let allowed = format!("http://{}", oci.host());
    let w = world("signed", sim(), &[ml.url(), &allowed]).await;
    let pem =
        std::fs::read_to_string(support::model_signing::key_file("test-key-sec1.pem")).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-signing"},
        "stringData": {"private-key.pem": pem}
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.ns.client(), w.ns.name())
        .patch(
            "model-signing",
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let model = unique_name("signed");
    let repository = "cxone/signed";
    let registry = json!({
        "oci": {"repository": oci.reference(repository)},
        "mlflow": {"trackingUri": ml.url(), "modelName": model},
        "promotion": {"minAccuracy": 0.0},
        "signing": {"keySecretRef": {"name": "model-signing"}}
    });
    w.create_job(guide_job(
        "signed",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let done = w.wait_job("signed", T, "Succeeded", succeeded).await;
    let st = done.status.clone().unwrap();
    let job_id = st.job_id.clone().unwrap();
    let reg = st.registry.clone().unwrap();
    let public = std::fs::read(support::model_signing::key_file("test-key.pub.pem")).unwrap();
    let fingerprint = format!("sha256:{}", sha256(&public));
    let pushed = reg.oci.clone().unwrap();
    assert_eq!(pushed.signing_key.as_deref(), Some(fingerprint.as_str()));
    let mlflow = reg.mlflow.clone().unwrap();
    assert_eq!(mlflow.signing_key.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(mlflow.signature.as_deref(), Some("model.sig"));
    let scratch = std::env::temp_dir().join(format!("cxone-signed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);

    // OCI: the model as `oras pull` writes it, the signature as its referrer.
    let m = manifest(&oci, &pushed.reference);
    for layer in m["layers"].as_array().unwrap() {
        let a = &layer["annotations"];
        assert_eq!(
            a["org.cncf.model.filepath"], a["org.opencontainers.image.title"],
            "{layer}"
        );
        assert!(a["org.cncf.model.filepath"].is_string(), "{layer}");
    }
    assert!(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"),
        "{m}"
    );
    let model_dir = scratch.join("oci-model");
    oci.oras(&["pull", "-o", model_dir.to_str().unwrap(), &pushed.reference]);
    assert_eq!(
        files_in(&model_dir),
        ["README.md", "model-config.json", "model-weights.json"]
    );
    let signature = pushed.signature.clone().expect("a signature referrer");
    let sig_dir = scratch.join("oci-signature");
    oci.oras(&[
        "pull",
        "-o",
        sig_dir.to_str().unwrap(),
        &format!("{}@{signature}", oci.reference(repository)),
    ]);
    let discovered = oci.oras(&["discover", "--format", "json", &pushed.reference]);
    let discovered = String::from_utf8_lossy(&discovered.stdout);
    assert!(discovered.contains(&signature), "{discovered}");
    let sig = sig_dir.join("model.sig");
    let (ok, said) = model_signing_verifies(&sig, &model_dir);
    assert!(ok, "the verifier refused the OCI model: {said}");
    let card = std::fs::read_to_string(model_dir.join("README.md")).unwrap();
    for needle in [
        "## Training data",
        "## Evaluation",
        "## Promotion gate",
        "**passed**",
        &job_id,
    ] {
        assert!(
            card.contains(needle),
            "{needle:?} missing from the card:\n{card}"
        );
    }
    // A changed byte, a removed file, an added file: each refused.
    let weights = model_dir.join("model-weights.json");
    let original = std::fs::read(&weights).unwrap();
    let mut changed = original.clone();
    changed[0] ^= 1;
    std::fs::write(&weights, &changed).unwrap();
    assert!(
        !model_signing_verifies(&sig, &model_dir).0,
        "a changed byte verified"
    );
    std::fs::write(&weights, &original).unwrap();
    std::fs::remove_file(model_dir.join("README.md")).unwrap();
    assert!(
        !model_signing_verifies(&sig, &model_dir).0,
        "a removed file verified"
    );
    std::fs::write(model_dir.join("README.md"), &card).unwrap();
    std::fs::write(model_dir.join("extra.txt"), b"x").unwrap();
    assert!(
        !model_signing_verifies(&sig, &model_dir).0,
        "an added file verified"
    );

    // MLflow: the LoggedModel, its files as MLflow's client downloads them, the card as the
    // version's description.
    let ml_dir = scratch.join("mlflow-model");
    let seen = tokio::task::block_in_place(|| ml.check_and_download(&model, &job_id, &ml_dir));
    assert_eq!(seen["versions"].as_array().unwrap().len(), 1, "{seen}");
    let logged = &seen["logged_model"];
    assert_eq!(logged["status"], "READY", "{seen}");
    assert!(logged["metrics"]["accuracy"].is_number(), "{logged}");
    assert_eq!(
        seen["versions"][0]["source"],
        format!("models:/{}", logged["model_id"].as_str().unwrap())
    );
    let description = seen["versions"][0]["description"].as_str().unwrap();
    assert!(description.contains("## Promotion gate"), "{description}");
    assert_eq!(
        files_in(&ml_dir),
        [
            "README.md",
            "model-config.json",
            "model-weights.json",
            "model.sig"
        ]
    );
    let (ok, said) = model_signing_verifies(&ml_dir.join("model.sig"), &ml_dir);
    assert!(ok, "the verifier refused the MLflow model: {said}");
    assert_eq!(
        std::fs::read(ml_dir.join("model-weights.json")).unwrap(),
        original,
        "the same weights in both registries"
    );

    // The audit record names the key, the signature and the files.
    let record = audit(&w, &done).await;
    for t in record["registry"]["targets"].as_array().unwrap() {
        assert_eq!(t["signingKey"], fingerprint.as_str(), "{t}");
        assert!(
            t["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "README.md"),
            "{t}"
        );
    }
    // The key never appears in status, Events or the operator's log.
    let key_line = pem.lines().nth(4).unwrap();
    assert!(!serde_json::to_string(&st).unwrap().contains(key_line));
    assert!(!events(&w).await.contains(key_line));
    let _ = std::fs::remove_dir_all(&scratch);
}
