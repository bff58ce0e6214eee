//! The run lifecycle where I/O matters, against a real kube-apiserver and the simulator: a
//! submission whose answer was lost, a run moved to another endpoint mid-training.

mod support {
    mod envtest;
    pub mod operator;
}

use std::time::{Duration, Instant};

use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::{ClientCredentials, Faults, SimulatorConfig};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::operator::{CLIENT_ID, CLIENT_SECRET, World, guide_job, phase};

const SECRET: &str = "cxone-credentials";
const T: Duration = Duration::from_secs(60);

fn sim(job_duration: Duration) -> SimulatorConfig {
    SimulatorConfig {
        job_duration,
        ..SimulatorConfig::default()
    }
}

async fn until(what: &str, w: &World, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            w.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deleting_a_job_whose_submission_answer_was_lost_cancels_what_cxone_created() {
    let mut w = World::new("lostdelete", sim(Duration::from_secs(60))).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    w.start_operator(&[]);
    // The first POST creates the CXone job and its answer is lost; every call after it fails
    // before anything happens, so the operator never learns the job id.
    w.sim.set_faults(Faults {
        post_commit_fault_rate: 1.0,
        ..Faults::default()
    });
    w.create_job(guide_job("lost", &w.sim_url(), json!({})))
        .await;
    until("the lost answer", &w, || {
        w.sim.stats().count("submit", 503) >= 1
    })
    .await;
    w.sim.set_faults(Faults {
        fault_rate: 1.0,
        ..Faults::default()
    });
    let job = w
        .wait_job("lost", T, "Submitting", |j| {
            phase(j) == Some(Phase::Submitting)
        })
        .await;
    assert_eq!(job.status.and_then(|s| s.job_id), None);
    assert_eq!(w.sim.stats().jobs_created, 1);
    w.jobs
        .delete("lost", &DeleteParams::default())
        .await
        .unwrap();
    // CXone answers again: the operator asks what the run's key names and cancels it.
    w.sim.set_faults(Faults::default());
    let deadline = Instant::now() + T;
    while let Some(j) = w.jobs.get_opt("lost").await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "job still there: {:?}\n{:?}\n{}",
            j.metadata,
            j.status,
            w.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = w.sim.stats();
    assert_eq!(
        stats.jobs_in("CANCELLED"),
        1,
        "{stats:?}\n{}",
        w.operator_log()
    );
    assert_eq!(stats.jobs_created, 1, "the lookup created nothing");
}

#[tokio::test]
async fn moving_a_training_job_to_another_endpoint_cancels_it_where_it_runs() {
    let mut w = World::new("move", sim(Duration::from_secs(60))).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    // A second CXone endpoint, with its own credentials in another Secret.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = cxone_skill_operator::simulator::spawn(
        SimulatorConfig {
            clients: vec![ClientCredentials::new("eu-client", "eu-secret-1")],
            job_duration: Duration::from_secs(1),
            ..SimulatorConfig::default()
        },
        listener,
    )
    .await
    .unwrap();
    w.put_secret("eu-credentials", "eu-client", "eu-secret-1")
        .await;
    let ns = format!("--watch-namespaces={}", w.ns.name());
    let allowed = format!("--allowed-endpoints={},{}", w.sim_url(), other.base_url());
    w.operator = Some(support::operator::OperatorProcess::start(
        w.cp,
        w.cp.kubeconfig_path(),
        &[ns, allowed],
    ));
    w.create_job(guide_job("mover", &w.sim_url(), json!({})))
        .await;
    w.wait_job("mover", T, "submitted", |j| {
        j.status.as_ref().and_then(|s| s.job_id.as_ref()).is_some()
    })
    .await;
    // Move it: new endpoint, new Secret.
    let patch = json!({"spec": {"connection": {
        "baseUrl": other.base_url(),
        "credentialsSecretRef": {"name": "eu-credentials"}
    }}});
    w.jobs
        .patch("mover", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let done = w
        .wait_job(
            "mover",
            T,
            "Succeeded at the new endpoint",
            |j: &SkillTrainingJob| phase(j) == Some(Phase::Succeeded),
        )
        .await;
    let history = done.status.unwrap().history;
    assert_eq!(history.first().map(|h| h.phase), Some(Phase::Cancelled));
    // The old run was cancelled at the old endpoint with the old credentials.
    assert_eq!(
        w.sim.stats().jobs_in("CANCELLED"),
        1,
        "{}",
        w.operator_log()
    );
    assert_eq!(other.stats().jobs_created, 1);
}
