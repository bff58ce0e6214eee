//! Crashes, restarts, shutdown and leader election of the operator binary, against a real
//! kube-apiserver and the simulator.

mod support {
    mod envtest;
    pub mod operator;
}

use std::time::{Duration, Instant};

use cxone_skill_operator::crd::Phase;
use cxone_skill_operator::simulator::SimulatorConfig;
use serde_json::json;
use support::operator::{CLIENT_ID, CLIENT_SECRET, World, guide_job, phase};

const SECRET: &str = "cxone-credentials";

fn sim(job_duration_ms: u64) -> SimulatorConfig {
    SimulatorConfig {
        job_duration: Duration::from_millis(job_duration_ms),
        ..SimulatorConfig::default()
    }
}

/// Deterministic pseudo-random delays (the seed is printed so a failure can be replayed).
struct Delays(u64);
impl Delays {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[tokio::test]
async fn sigkill_at_random_points_still_finishes_every_job_exactly_once() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    eprintln!("kill schedule seed: {seed}");
    let mut delays = Delays(seed);
    let mut w = World::new("sigkill", sim(5000)).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    const JOBS: usize = 5;
    w.start_operator(&[]);
    for i in 0..JOBS {
        w.create_job(guide_job(&format!("crash-{i}"), &w.sim_url(), json!({})))
            .await;
    }
    // Kill and restart the operator several times while jobs are being submitted and trained.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(delays.next_ms(150, 1800))).await;
        if let Some(op) = w.operator.as_mut() {
            op.kill();
        }
        w.start_operator(&[]);
    }
    for i in 0..JOBS {
        w.wait_job(
            &format!("crash-{i}"),
            Duration::from_secs(120),
            "Succeeded",
            |j| phase(j) == Some(Phase::Succeeded),
        )
        .await;
    }
    let stats = w.sim.stats();
    assert_eq!(
        stats.jobs_created, JOBS as u64,
        "exactly one CXone job per SkillTrainingJob (seed {seed})"
    );
    for i in 0..JOBS {
        let job = w.jobs.get(&format!("crash-{i}")).await.unwrap();
        let st = job.status.unwrap();
        assert_eq!(st.history.len(), 1, "crash-{i}: one run in history");
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut w = World::new("sigterm", sim(1000)).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    w.start_operator(&[]);
    w.create_job(guide_job("before", &w.sim_url(), json!({})))
        .await;
    w.wait_job("before", Duration::from_secs(60), "Succeeded", |j| {
        phase(j) == Some(Phase::Succeeded)
    })
    .await;
    let op = w.operator.as_mut().unwrap();
    assert!(
        op.terminate(),
        "the operator exits on SIGTERM\n{}",
        op.log()
    );
    assert!(
        op.log().contains("shutdown signal received"),
        "{}",
        op.log()
    );
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let w = World::new("leader", sim(1500)).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    let mut args = w.operator_args();
    args.extend([
        "--leader-elect".to_string(),
        format!("--leader-election-namespace={}", w.ns.name()),
        "--leader-election-lease-seconds=4".to_string(),
    ]);
    let kubeconfig = w.cp.kubeconfig_path().to_path_buf();
    let mut a = support::operator::OperatorProcess::start(w.cp, &kubeconfig, &args);
    let mut b = support::operator::OperatorProcess::start(w.cp, &kubeconfig, &args);
    // Exactly one becomes leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader_is_a = loop {
        let (la, lb) = (
            a.log().contains("became leader"),
            b.log().contains("became leader"),
        );
        assert!(
            !(la && lb),
            "two leaders at once\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
        if la || lb {
            break la;
        }
        assert!(
            Instant::now() < deadline,
            "no leader\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (leader, standby) = if leader_is_a {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    w.create_job(guide_job("first", &w.sim_url(), json!({})))
        .await;
    w.wait_job("first", Duration::from_secs(60), "Succeeded", |j| {
        phase(j) == Some(Phase::Succeeded)
    })
    .await;
    assert!(leader.log().contains("submitted"), "the leader reconciled");
    assert!(
        !standby.log().contains("submitted"),
        "the standby did not reconcile\n{}",
        standby.log()
    );
    // The leader dies; the standby takes over within the lease time and reconciles new work.
    leader.kill();
    w.create_job(guide_job("second", &w.sim_url(), json!({})))
        .await;
    w.wait_job(
        "second",
        Duration::from_secs(60),
        "Succeeded after failover",
        |j| phase(j) == Some(Phase::Succeeded),
    )
    .await;
    assert!(standby.log().contains("became leader"), "{}", standby.log());
    assert_eq!(w.sim.stats().jobs_created, 2);
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_reconciling() {
    use k8s_openapi::api::coordination::v1::Lease;
    let w = World::new("fence", sim(1500)).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    let mut args = w.operator_args();
    args.extend([
        "--leader-elect".to_string(),
        format!("--leader-election-namespace={}", w.ns.name()),
        "--leader-election-lease-seconds=6".to_string(),
    ]);
    let kubeconfig = w.cp.kubeconfig_path().to_path_buf();
    let leader = support::operator::OperatorProcess::start(w.cp, &kubeconfig, &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leader.log().contains("became leader") {
        assert!(Instant::now() < deadline, "no leader\n{}", leader.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = leader.pid().expect("the operator's pid");
    // Another replica takes the Lease (as after a renewal this one never managed to send).
    let leases: kube::Api<Lease> = kube::Api::namespaced(w.ns.client(), w.ns.name());
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 60}});
    leases
        .patch(
            "cxone-skill-operator",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    // The replica stops within a lease duration instead of reconciling next to the new leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica kept running without its Lease\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = leader.log();
    assert!(
        log.contains("lost leadership") || log.contains("leadership is not proven"),
        "{log}"
    );
}

/// A metric's value in the operator's /metrics text (0 when absent).
async fn operator_metric(w: &World, name: &str) -> f64 {
    let op = w.operator.as_ref().expect("operator running");
    let text = op
        .http_get(op.metrics_port, "/metrics")
        .await
        .map(|(_, t)| t)
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_finished_job_reads_no_configmap_after_a_restart() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let mut w = World::new("norereads", sim(500)).await;
    w.put_secret(SECRET, CLIENT_ID, CLIENT_SECRET).await;
    let cms: Api<ConfigMap> = Api::namespaced(w.ns.client(), w.ns.name());
    let data = "text,label\ncancel now,cancel_sub\nstop my plan,cancel_sub\nupgrade me,upgrade_plan\nmore features please,upgrade_plan\n";
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "utterances"},
        "data": {"data.csv": data}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut job = guide_job(
        "from-cm",
        &w.sim_url(),
        json!({
            "utterancesFrom": [{"configMapKeyRef": {"name": "utterances", "key": "data.csv"}, "format": "csv"}]
        }),
    );
    job["spec"]["labels"] =
        json!([{"id": "cancel_sub", "name": "Cancel"}, {"id": "upgrade_plan", "name": "Upgrade"}]);
    job["spec"].as_object_mut().unwrap().remove("utterances");
    w.start_operator(&[]);
    w.create_job(job).await;
    let done = w
        .wait_job("from-cm", Duration::from_secs(60), "Succeeded", |j| {
            phase(j) == Some(Phase::Succeeded)
        })
        .await;
    let first_digest = done.status.as_ref().unwrap().dataset_digest.clone();
    assert!(operator_metric(&w, "cxone_skill_configmap_reads_total").await >= 1.0);

    w.operator.as_mut().unwrap().kill();
    w.start_operator(&[]);
    // Wait until the new process has reconciled the finished job.
    let deadline = Instant::now() + Duration::from_secs(60);
    while operator_metric(&w, "controller_runtime_reconcile_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no reconciliation after the restart\n{}",
            w.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        operator_metric(&w, "cxone_skill_configmap_reads_total").await,
        0.0,
        "a finished job's unchanged ConfigMap is not read again"
    );
    // Changed data is read, and trains again.
    let more = format!("{data}cancel it all,cancel_sub\nbigger plan please,upgrade_plan\n");
    cms.patch(
        "utterances",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"data.csv": more}})),
    )
    .await
    .unwrap();
    let retrained = w
        .wait_job(
            "from-cm",
            Duration::from_secs(60),
            "a second run Succeeded",
            |j| {
                phase(j) == Some(Phase::Succeeded)
                    && j.status.as_ref().unwrap().dataset_digest != first_digest
            },
        )
        .await;
    assert_eq!(retrained.status.unwrap().history.len(), 2);
    assert!(operator_metric(&w, "cxone_skill_configmap_reads_total").await >= 1.0);
}
