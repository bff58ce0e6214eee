//! The registration target measured on the operator process: one job whose `spec.registry`
//! names both an OCI registry (`docker-registry`) and MLflow (3.17.2 from `hack/mlflow-venv.sh`),
//! run by the operator binary against the real control plane, with the simulator serving weights
//! of the bench's size. The figures are the whole process's resident memory (sampled every 2 ms
//! from `/proc/<pid>/status`) from the moment the job trains to the moment it has Succeeded,
//! then after it settles, and the time the job spent in `Registering`.

use std::time::{Duration, Instant};

use cxone_skill_operator::crd::Phase;
use cxone_skill_operator::simulator::SimulatorConfig;
use serde_json::json;

use super::support::mlflow::{server, unique_name};
use super::support::oci_registry::TestRegistry;
use super::support::operator::{CLIENT_ID, CLIENT_SECRET, World, guide_job};

/// Longest wait for the job to train and register.
const DEADLINE: Duration = Duration::from_secs(900);

pub struct OperatorFigures {
    /// Time between the job first seen `Registering` and first seen `Succeeded`.
    pub registering: Duration,
    /// RSS when the job was seen training (KiB).
    pub rss_before_kib: u64,
    /// Highest RSS from then until Succeeded (KiB).
    pub rss_peak_kib: u64,
    /// RSS 5 s after Succeeded (KiB): what the allocator gave back.
    pub rss_after_kib: u64,
}

fn rss_kib(pid: u32) -> u64 {
    super::memory_kib_of(&pid.to_string()).0
}

pub async fn run(weights_bytes: u64) -> OperatorFigures {
    let ml = server().await;
    let oci = TestRegistry::start().await;
    let config = SimulatorConfig {
        artifact_weights_bytes: Some(weights_bytes),
        job_duration: Duration::from_secs(3),
        ..SimulatorConfig::default()
    };
    let mut w = World::new("bench-registration", config).await;
    w.put_secret("cxone-credentials", CLIENT_ID, CLIENT_SECRET)
        .await;
    let allowed = format!("--allowed-registries={},http://{}", ml.url(), oci.host());
    w.start_operator(&[allowed.as_str()]);
    let pid = w
        .operator
        .as_ref()
        .and_then(|o| o.pid())
        .expect("the operator's pid");
    let registry = json!({
        "oci": {"repository": oci.reference("bench/operator")},
        "mlflow": {"trackingUri": ml.url(), "modelName": unique_name("bench")},
    });
    w.create_job(guide_job(
        "registered",
        &w.sim_url(),
        json!({ "registry": registry }),
    ))
    .await;
    let deadline = Instant::now() + DEADLINE;
    let mut sampler = None;
    let mut rss_before = 0;
    let mut registering_at = None;
    let registering = loop {
        assert!(
            Instant::now() < deadline,
            "the job did not register within {DEADLINE:?}\n{}",
            w.operator_log()
        );
        let job = w.jobs.get("registered").await.expect("the job");
        let phase = job.status.as_ref().and_then(|s| s.phase);
        if sampler.is_none() && phase == Some(Phase::Training) {
            rss_before = rss_kib(pid);
            sampler = Some(super::RssSampler::start_for(&pid.to_string()));
        }
        if registering_at.is_none() && phase == Some(Phase::Registering) {
            registering_at = Some(Instant::now());
        }
        match phase {
            Some(Phase::Succeeded) => break registering_at.map(|t| t.elapsed()),
            Some(Phase::Failed) => panic!(
                "the registration failed: {:?}\n{}",
                job.status.and_then(|s| s.message),
                w.operator_log()
            ),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let peak = sampler
        .map(super::RssSampler::finish)
        .unwrap_or_else(|| rss_kib(pid));
    tokio::time::sleep(Duration::from_secs(5)).await;
    OperatorFigures {
        registering: registering.expect("the job was seen Registering"),
        rss_before_kib: rss_before.max(1),
        rss_peak_kib: peak,
        rss_after_kib: rss_kib(pid),
    }
}
