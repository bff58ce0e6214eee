//! What a careless or hostile tenant can hand the operator, against a real kube-apiserver and the
//! simulator: names at the API server's limits, objects the job does not own, remote ends that
//! never answer.

mod support {
    mod envtest;
    pub mod operator;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::SimulatorConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::operator::{CLIENT_ID, CLIENT_SECRET, World, condition, guide_job, phase};

const SECRET: &str = "cxone-credentials";
const T: Duration = Duration::from_secs(90);

async fn world(prefix: &str, operator_flags: &[&str]) -> World {
    let mut w = World::new(
        prefix,
        SimulatorConfig {
            job_duration: Duration::from_millis(1500),
            ..SimulatorConfig::default()
        },
    )
    .await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    w.start_operator(operator_flags);
    w
}

fn succeeded(j: &SkillTrainingJob) -> bool {
    phase(j) == Some(Phase::Succeeded)
}

fn ready_reason(j: &SkillTrainingJob) -> String {
    condition(j, "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// A label value as the API server accepts it.
fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
}

#[tokio::test]
async fn jobs_with_64_and_253_character_names_succeed() {
    let w = world("longname", &[]).await;
    let n64 = format!("a{}", "b".repeat(63));
    // 253 characters with dots, as the API server allows for custom resources.
    let n253 = format!("{}.{}.{}", "c".repeat(84), "d".repeat(84), "e".repeat(83));
    assert_eq!((n64.len(), n253.len()), (64, 253));
    for name in [&n64, &n253] {
        w.create_job(guide_job(name, &w.sim_url(), json!({}))).await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(w.ns.client(), w.ns.name());
    for name in [&n64, &n253] {
        let job = w.wait_job(name, T, "Succeeded", succeeded).await;
        let audit = job.status.unwrap().audit.expect("an audit record");
        assert!(audit.config_map.len() <= 253, "{}", audit.config_map);
        let cm = cms.get(&audit.config_map).await.unwrap();
        for (k, v) in cm.metadata.labels.unwrap_or_default() {
            assert!(valid_label_value(&v), "label {k}={v:?}");
        }
    }
    assert_eq!(w.sim.stats().jobs_created, 2);
    assert_eq!(
        w.sim.stats().count("export", 200),
        2,
        "one export per run, no retries"
    );
}

#[tokio::test]
async fn artifact_secret_owned_by_someone_else_is_never_modified() {
    let w = world("takeover", &["--enable-artifact-secrets"]).await;
    let secrets: Api<Secret> = Api::namespaced(w.ns.client(), w.ns.name());
    let user_secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("app-config".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "db-password".to_string(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Default::default()
    };
    let before = secrets
        .create(&PostParams::default(), &user_secret)
        .await
        .unwrap();
    // Pointing at an unrelated Secret and at the credentials Secret: both refused.
    for (job, target) in [("steal-app", "app-config"), ("steal-creds", SECRET)] {
        w.create_job(guide_job(
            job,
            &w.sim_url(),
            json!({"artifacts": {"secretName": target}}),
        ))
        .await;
    }
    // A Secret nobody has yet is created for the job and owned by it.
    w.create_job(guide_job(
        "own",
        &w.sim_url(),
        json!({"artifacts": {"secretName": "own-artifacts"}}),
    ))
    .await;
    for job in ["steal-app", "steal-creds"] {
        let j = w
            .wait_job(job, T, "Ready=False ObjectNotOwned", |j| {
                ready_reason(j) == "ObjectNotOwned"
            })
            .await;
        let message = condition(&j, "Ready").unwrap().message.clone();
        assert!(message.contains("was not created by this job"), "{message}");
    }
    let own = w.wait_job("own", T, "Succeeded", succeeded).await;
    let created = secrets.get("own-artifacts").await.unwrap();
    let owner = &created.metadata.owner_references.unwrap()[0];
    assert_eq!(Some(&owner.uid), own.metadata.uid.as_ref());
    assert!(created.data.unwrap().contains_key("modelWeightsUrl"));
    // A second job cannot take the first one's Secret either.
    w.create_job(guide_job(
        "steal-own",
        &w.sim_url(),
        json!({"artifacts": {"secretName": "own-artifacts"}}),
    ))
    .await;
    w.wait_job("steal-own", T, "Ready=False ObjectNotOwned", |j| {
        ready_reason(j) == "ObjectNotOwned"
    })
    .await;
    // Nothing of the user's Secrets changed.
    let after = secrets.get("app-config").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.owner_references, None);
    let creds = secrets.get(SECRET).await.unwrap();
    assert_eq!(creds.metadata.owner_references, None);
    assert!(!creds.data.unwrap().contains_key("modelWeightsUrl"));
    let events =
        w.cp.kubectl()
            .args(["get", "events", "-n", w.ns.name(), "-o", "json"])
            .output()
            .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("ObjectNotOwned"),
        "a Warning Event says why"
    );
    assert!(!events.contains("signature="), "no signed URL in Events");
}

#[tokio::test]
async fn artifact_secret_needs_the_operator_feature() {
    let w = world("nosecrets", &[]).await;
    w.create_job(guide_job(
        "wants-secret",
        &w.sim_url(),
        json!({"artifacts": {"secretName": "my-artifacts"}}),
    ))
    .await;
    let j = w
        .wait_job("wants-secret", T, "Invalid", |j| {
            phase(j) == Some(Phase::Invalid)
        })
        .await;
    let message = j.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("--enable-artifact-secrets"), "{message}");
    assert_eq!(w.sim.stats().jobs_created, 0, "nothing was trained");
    let secrets: Api<Secret> = Api::namespaced(w.ns.client(), w.ns.name());
    assert!(secrets.get_opt("my-artifacts").await.unwrap().is_none());
}

/// A CXone endpoint that accepts connections and never answers; counts the connections.
async fn silent_server() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted, task)
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_stop_other_jobs_with_one_worker() {
    let (silent, accepted, _server) = silent_server().await;
    let mut w = World::new(
        "hang",
        SimulatorConfig {
            job_duration: Duration::from_millis(1500),
            ..SimulatorConfig::default()
        },
    )
    .await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    let allowed = format!("--allowed-endpoints={},{silent}", w.sim_url());
    let ns = format!("--watch-namespaces={}", w.ns.name());
    w.operator = Some(support::operator::OperatorProcess::start(
        w.cp,
        w.cp.kubeconfig_path(),
        &[ns, allowed, "--concurrency=1".to_string()],
    ));
    for i in 0..3 {
        w.create_job(guide_job(&format!("hostile-{i}"), &silent, json!({})))
            .await;
    }
    w.create_job(guide_job("normal", &w.sim_url(), json!({})))
        .await;
    // The first call that times out pauses the endpoint for every job, so the one worker is
    // free for the others instead of waiting out one timeout after another.
    w.wait_job("normal", T, "Succeeded next to hanging jobs", succeeded)
        .await;
    let calls = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&calls),
        "{calls} connections to the silent endpoint; the pause should allow one at a time"
    );
    let jobs: Api<SkillTrainingJob> = Api::namespaced(w.ns.client(), w.ns.name());
    let listed = jobs.list(&ListParams::default()).await.unwrap();
    assert!(
        listed
            .items
            .iter()
            .filter(|j| j
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("hostile"))
            .all(|j| j.status.as_ref().and_then(|s| s.job_id.as_ref()).is_none()),
        "nothing was submitted for the hanging jobs"
    );
}
