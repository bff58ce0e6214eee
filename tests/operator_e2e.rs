//! The operator binary against a real kube-apiserver + etcd and the CXone simulator over HTTP.
//! Each test has its own namespace, simulator and operator (watching only that namespace).

mod support {
    mod envtest;
    pub mod operator;
}

use std::time::Duration;

use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::{Faults, SimulatorConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::operator::{World, condition, guide_job, phase};

const SECRET: &str = "cxone-credentials";
const T: Duration = Duration::from_secs(60);

fn sim(job_duration_ms: u64) -> SimulatorConfig {
    SimulatorConfig {
        job_duration: Duration::from_millis(job_duration_ms),
        ..SimulatorConfig::default()
    }
}

async fn world(prefix: &str, config: SimulatorConfig) -> World {
    let mut w = World::new(prefix, config).await;
    w.put_secret(
        SECRET,
        support::operator::CLIENT_ID,
        support::operator::CLIENT_SECRET,
    )
    .await;
    w.start_operator(&[]);
    w
}

fn succeeded(j: &SkillTrainingJob) -> bool {
    phase(j) == Some(Phase::Succeeded)
}

#[tokio::test]
async fn job_goes_from_pending_to_succeeded_with_everything_in_status() {
    let w = world("happy", sim(3000)).await;
    w.create_job(guide_job("faq", &w.sim_url(), json!({})))
        .await;
    // Progress is visible while training.
    w.wait_job("faq", T, "a running phase", |j| {
        matches!(
            phase(j),
            Some(Phase::Queued | Phase::Training | Phase::Evaluating)
        )
    })
    .await;
    let job = w.wait_job("faq", T, "Succeeded", succeeded).await;
    let st = job.status.clone().unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.progress, Some(100));
    assert!(st.job_id.as_deref().unwrap().starts_with("job-"));
    assert!(st.compute_units_allocated.is_some() && st.compute_units_used.is_some());
    assert!(st.submitted_at.is_some() && st.completed_at.is_some());
    assert!(st.dataset_digest.as_deref().unwrap().starts_with("sha256:"));
    let eval = st.evaluation.clone().unwrap();
    assert_eq!(eval.examples, 3);
    assert_eq!(eval.confusion_matrix.len(), 3);
    assert_eq!(eval.server_metrics_consistent, Some(true));
    assert!(eval.recommended_threshold.is_some());
    let artifacts = st.artifacts.clone().unwrap();
    assert!(
        artifacts
            .model_weights_url
            .unwrap()
            .starts_with(&w.sim_url())
    );
    for (t, s) in [
        ("Validated", "True"),
        ("Submitted", "True"),
        ("Succeeded", "True"),
        ("Ready", "True"),
    ] {
        let c = condition(&job, t).unwrap_or_else(|| panic!("no {t} condition"));
        assert_eq!(c.status, s, "{t}: {c:?}");
        assert_eq!(c.observed_generation, Some(1));
    }
    assert_eq!(st.history.len(), 1);
    // The audit record: immutable ConfigMap owned by the job, every flag from a check that ran.
    let audit = st.audit.clone().unwrap();
    let cm = Api::<ConfigMap>::namespaced(w.ns.client(), w.ns.name())
        .get(&audit.config_map)
        .await
        .unwrap();
    assert_eq!(cm.immutable, Some(true));
    assert_eq!(cm.metadata.owner_references.unwrap()[0].name, "faq");
    let data = cm.data.unwrap();
    let record: serde_json::Value = serde_json::from_str(&data["audit.json"]).unwrap();
    assert_eq!(record["schema"], "audit.ai.cxone.io/v1");
    assert_eq!(record["result"], "Succeeded");
    assert_eq!(record["compliance"]["dataValidationPassed"], true);
    assert_eq!(record["compliance"]["signedUrlsRedacted"], true);
    assert!(
        !data["audit.json"].contains("signature="),
        "no signed URL in the audit record"
    );
    assert!(data.contains_key("evaluation.json"));
    // One CXone job, and `kubectl get stj` shows the printer columns.
    assert_eq!(w.sim.stats().jobs_created, 1);
    let out =
        w.cp.kubectl()
            .args(["get", "stj", "-n", w.ns.name()])
            .output()
            .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "PHASE",
        "PROGRESS",
        "PRECISION",
        "RECALL",
        "READY",
        "AGE",
    ] {
        assert!(header.contains(col), "missing column {col}: {table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("Succeeded") && row.contains("100") && row.contains("True"),
        "{table}"
    );
}

#[tokio::test]
async fn invalid_data_from_a_configmap_is_reported_then_fixed() {
    let w = world("cmdata", sim(1000)).await;
    let cms: Api<ConfigMap> = Api::namespaced(w.ns.client(), w.ns.name());
    let mut lines = vec!["text,label".to_string()];
    for i in 0..7 {
        lines.push(format!("please cancel it {i},cancel_sub"));
    }
    lines.push("upgrade me,upgrade_plan".into());
    lines.push("more features please,upgrade_plan".into());
    lines.push("where is my parcel,track_order".into());
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "utterances"},
        "data": {"data.csv": lines.join("\n")}
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
    job["spec"]["labels"] = json!([
        {"id": "cancel_sub", "name": "Cancel"}, {"id": "upgrade_plan", "name": "Upgrade"}
    ]);
    job["spec"].as_object_mut().unwrap().remove("utterances");
    w.create_job(job).await;
    let invalid = w
        .wait_job("from-cm", T, "Invalid", |j| {
            phase(j) == Some(Phase::Invalid)
        })
        .await;
    let validated = condition(&invalid, "Validated").unwrap();
    assert_eq!(validated.status, "False");
    assert!(
        validated.message.contains("class imbalance 7.00:1"),
        "{}",
        validated.message
    );
    assert!(
        validated.message.contains(
            "configmap/utterances key data.csv line 11: label \"track_order\" is not defined"
        ),
        "{}",
        validated.message
    );
    assert_eq!(w.sim.stats().total("submit"), 0, "nothing submitted");
    // Fixing the data in the ConfigMap (no spec change) starts a run.
    let fixed = "text,label\ncancel now,cancel_sub\nstop my plan,cancel_sub\nupgrade me,upgrade_plan\nmore features please,upgrade_plan\n";
    cms.patch(
        "utterances",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"data.csv": fixed}})),
    )
    .await
    .unwrap();
    w.wait_job("from-cm", T, "Succeeded after the fix", succeeded)
        .await;
}

#[tokio::test]
async fn missing_secret_then_created() {
    let mut w = World::new("nosecret", sim(1000)).await;
    w.start_operator(&[]);
    w.create_job(guide_job("waits", &w.sim_url(), json!({})))
        .await;
    let pending = w
        .wait_job("waits", T, "Ready=False CredentialsError", |j| {
            condition(j, "Ready").is_some_and(|c| c.reason == "CredentialsError")
        })
        .await;
    assert!(
        condition(&pending, "Ready")
            .unwrap()
            .message
            .contains("does not exist")
    );
    assert_eq!(w.sim.stats().total("submit"), 0);
    w.put_secret(
        SECRET,
        support::operator::CLIENT_ID,
        support::operator::CLIENT_SECRET,
    )
    .await;
    // The Secret watch wakes the job; the backoff alone would take longer than this.
    w.wait_job("waits", Duration::from_secs(30), "Succeeded", succeeded)
        .await;
}

#[tokio::test]
async fn rotated_secret_is_picked_up() {
    let w = world("rotate", sim(4000)).await;
    w.put_secret(SECRET, support::operator::CLIENT_ID, "wrong-secret")
        .await;
    w.create_job(guide_job("rot", &w.sim_url(), json!({})))
        .await;
    w.wait_job("rot", T, "CredentialsError", |j| {
        condition(j, "Ready").is_some_and(|c| c.reason == "CredentialsError")
    })
    .await;
    let failed_tokens = w.sim.stats().count("token", 401);
    assert!(failed_tokens >= 1);
    w.put_secret(
        SECRET,
        support::operator::CLIENT_ID,
        support::operator::CLIENT_SECRET,
    )
    .await;
    w.wait_job("rot", T, "Succeeded with the rotated secret", succeeded)
        .await;
    assert!(w.sim.stats().tokens_issued >= 1);
    assert_eq!(w.sim.stats().jobs_created, 1);
}

#[tokio::test]
async fn spec_change_mid_training_cancels_the_old_run() {
    let w = world("respec", sim(30_000)).await;
    w.create_job(guide_job("retrain", &w.sim_url(), json!({})))
        .await;
    let first = w
        .wait_job("retrain", T, "training", |j| {
            j.status.as_ref().and_then(|s| s.job_id.clone()).is_some()
        })
        .await;
    let old_id = first.status.unwrap().job_id.unwrap();
    w.jobs
        .patch(
            "retrain",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hyperparameters": {"maxEpochs": 20}}})),
        )
        .await
        .unwrap();
    let job = w
        .wait_job("retrain", T, "a new run", |j| {
            j.status
                .as_ref()
                .and_then(|s| s.job_id.clone())
                .is_some_and(|id| id != old_id)
        })
        .await;
    let st = job.status.unwrap();
    assert_eq!(st.observed_generation, Some(2));
    let h = &st.history[0];
    assert_eq!(h.phase, Phase::Cancelled);
    assert_eq!(h.job_id.as_deref(), Some(old_id.as_str()));
    assert_eq!(w.sim.stats().jobs_in("CANCELLED"), 1);
    assert_eq!(w.sim.stats().jobs_created, 2);
}

#[tokio::test]
async fn operational_spec_changes_do_not_retrain() {
    let w = world("noretrain", sim(1000)).await;
    w.create_job(guide_job("stable", &w.sim_url(), json!({})))
        .await;
    w.wait_job("stable", T, "Succeeded", succeeded).await;
    w.jobs
        .patch("stable", &PatchParams::default(), &Patch::Merge(json!({"spec": {"polling": {"maxIntervalSeconds": 10}, "deletionPolicy": "Orphan"}})))
        .await
        .unwrap();
    w.wait_job("stable", T, "observedGeneration 2", |j| {
        j.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(w.sim.stats().jobs_created, 1);
}

#[tokio::test]
async fn delete_mid_training_cancels_the_cxone_job() {
    let w = world("delete", sim(30_000)).await;
    w.create_job(guide_job("doomed", &w.sim_url(), json!({})))
        .await;
    let job = w
        .wait_job("doomed", T, "submitted", |j| {
            j.status.as_ref().and_then(|s| s.job_id.clone()).is_some()
        })
        .await;
    assert!(
        job.metadata
            .finalizers
            .unwrap()
            .contains(&"ai.cxone.io/cancel-training".to_string())
    );
    w.jobs
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("doomed", T).await;
    assert_eq!(
        w.sim.stats().jobs_in("CANCELLED"),
        1,
        "{}",
        w.operator_log()
    );
}

#[tokio::test]
async fn delete_with_orphan_policy_leaves_the_job_running() {
    let w = world("orphan", sim(30_000)).await;
    w.create_job(guide_job(
        "orphaned",
        &w.sim_url(),
        json!({"deletionPolicy": "Orphan"}),
    ))
    .await;
    w.wait_job("orphaned", T, "submitted", |j| {
        j.status.as_ref().and_then(|s| s.job_id.clone()).is_some()
    })
    .await;
    w.jobs
        .delete("orphaned", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("orphaned", T).await;
    assert_eq!(w.sim.stats().jobs_in("CANCELLED"), 0);
}

#[tokio::test]
async fn suspended_job_is_not_submitted_until_resumed() {
    let w = world("suspend", sim(1000)).await;
    w.create_job(guide_job("later", &w.sim_url(), json!({"suspend": true})))
        .await;
    let job = w
        .wait_job("later", T, "Suspended", |j| {
            condition(j, "Ready").is_some_and(|c| c.reason == "Suspended")
        })
        .await;
    assert_eq!(phase(&job), Some(Phase::Pending));
    assert_eq!(w.sim.stats().total("submit"), 0);
    w.jobs
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    w.wait_job("later", T, "Succeeded", succeeded).await;
}

#[tokio::test]
async fn lost_submit_response_creates_exactly_one_cxone_job() {
    let w = world("lost", sim(1000)).await;
    w.sim.set_faults(Faults {
        post_commit_fault_rate: 1.0,
        ..Faults::default()
    });
    w.create_job(guide_job("once", &w.sim_url(), json!({})))
        .await;
    // The first POST creates the job but its answer is lost; the retry reuses the key.
    let deadline = std::time::Instant::now() + T;
    while w.sim.stats().count("submit", 503) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no submission attempt\n{}",
            w.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.sim.set_faults(Faults::default());
    w.wait_job("once", T, "Succeeded", succeeded).await;
    let stats = w.sim.stats();
    assert_eq!(stats.jobs_created, 1);
    assert!(stats.idempotent_replays >= 1);
}

#[tokio::test]
async fn cxone_rejection_fails_without_retry_storm() {
    let w = world(
        "reject",
        SimulatorConfig {
            max_class_imbalance_ratio: 1.0,
            ..sim(1000)
        },
    )
    .await;
    // Valid for the operator (ratio 2.0 with the limit raised), rejected by CXone (limit 1.0).
    let job = guide_job(
        "rejected",
        &w.sim_url(),
        json!({
            "validation": {"maxClassImbalanceRatio": 3.0},
            "utterances": [
                {"text": "cancel", "label": "cancel_sub"}, {"text": "stop it", "label": "cancel_sub"},
                {"text": "end my plan", "label": "cancel_sub"}, {"text": "terminate", "label": "cancel_sub"},
                {"text": "upgrade", "label": "upgrade_plan"}, {"text": "more", "label": "upgrade_plan"},
                {"text": "reset", "label": "reset_pwd"}, {"text": "forgot", "label": "reset_pwd"}
            ]
        }),
    );
    w.create_job(job).await;
    let failed = w
        .wait_job("rejected", T, "Failed", |j| phase(j) == Some(Phase::Failed))
        .await;
    let c = condition(&failed, "Submitted").unwrap();
    assert_eq!(c.reason, "SubmissionRejected");
    assert!(c.message.contains("class imbalance"), "{}", c.message);
    // Wake the job again with a change that trains nothing new: still no second submission.
    w.jobs
        .patch(
            "rejected",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"polling": {"maxIntervalSeconds": 20}}})),
        )
        .await
        .unwrap();
    w.wait_job("rejected", T, "observedGeneration 2", |j| {
        j.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(w.sim.stats().count("submit", 400), 1);
}

#[tokio::test]
async fn rate_limit_storm_still_finishes_every_job() {
    let config = SimulatorConfig {
        faults: Faults {
            rate_limit_per_second: Some(2.0),
            ..Faults::default()
        },
        ..sim(2000)
    };
    let mut w = World::new("storm", config).await;
    w.put_secret(
        SECRET,
        support::operator::CLIENT_ID,
        support::operator::CLIENT_SECRET,
    )
    .await;
    // The operator's own limit is above the simulator's, so 429s happen and must be honoured.
    w.start_operator(&["--cxone-rate-limit=50"]);
    for i in 0..6 {
        w.create_job(guide_job(&format!("storm-{i}"), &w.sim_url(), json!({})))
            .await;
    }
    for i in 0..6 {
        w.wait_job(
            &format!("storm-{i}"),
            Duration::from_secs(120),
            "Succeeded",
            succeeded,
        )
        .await;
    }
    let stats = w.sim.stats();
    assert!(stats.rate_limited > 0, "the storm produced 429s");
    assert_eq!(stats.jobs_created, 6);
}

#[tokio::test]
async fn endpoint_outside_the_allowlist_is_invalid() {
    let w = world("allow", sim(1000)).await;
    w.create_job(guide_job(
        "elsewhere",
        "https://collector.example.com",
        json!({}),
    ))
    .await;
    let job = w
        .wait_job("elsewhere", T, "Invalid", |j| {
            phase(j) == Some(Phase::Invalid)
        })
        .await;
    let c = condition(&job, "Validated").unwrap();
    assert_eq!(c.reason, "EndpointNotAllowed");
    assert!(
        c.message.contains("not an allowed CXone endpoint"),
        "{}",
        c.message
    );
    assert_eq!(
        w.sim.stats().total("token"),
        0,
        "credentials were never sent"
    );
}

#[tokio::test]
async fn failed_training_reports_the_reason() {
    let config = SimulatorConfig {
        faults: Faults {
            job_failure_rate: 1.0,
            ..Faults::default()
        },
        ..sim(1500)
    };
    let w = world("fail", config).await;
    w.create_job(guide_job("doomed", &w.sim_url(), json!({})))
        .await;
    let job = w
        .wait_job("doomed", T, "Failed", |j| phase(j) == Some(Phase::Failed))
        .await;
    let c = condition(&job, "Succeeded").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "TrainingFailed")
    );
    assert!(c.message.contains("failed:"), "{}", c.message);
    assert!(
        job.status.unwrap().audit.is_some(),
        "failed runs are audited too"
    );
}

#[tokio::test]
async fn server_side_dry_run_of_the_original_manifest_shows_no_drift() {
    let w = world("drift", sim(1000)).await;
    let manifest = guide_job("gitops", &w.sim_url(), json!({}));
    let path = w.cp.dir().join(format!("{}-gitops.json", w.ns.name()));
    std::fs::write(&path, manifest.to_string()).unwrap();
    let apply =
        w.cp.kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager=argocd-controller",
                "-n",
                w.ns.name(),
                "-f",
            ])
            .arg(&path)
            .output()
            .unwrap();
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    w.wait_job("gitops", T, "Succeeded", succeeded).await;
    let diff =
        w.cp.kubectl()
            .args([
                "diff",
                "--server-side",
                "--field-manager=argocd-controller",
                "-n",
                w.ns.name(),
                "-f",
            ])
            .arg(&path)
            .output()
            .unwrap();
    // kubectl diff exits 0 when there is no difference, 1 when there is.
    assert_eq!(
        diff.status.code(),
        Some(0),
        "drift after success:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

#[tokio::test]
async fn metrics_and_probes_are_served() {
    let w = world("metrics", sim(1000)).await;
    w.create_job(guide_job("m", &w.sim_url(), json!({}))).await;
    w.wait_job("m", T, "Succeeded", succeeded).await;
    let op = w.operator.as_ref().unwrap();
    let (code, _) = op.http_get(op.probe_port, "/healthz").await.unwrap();
    assert_eq!(code, 200);
    let (code, body) = op.http_get(op.probe_port, "/readyz").await.unwrap();
    assert_eq!(code, 200, "{body}\n{}", w.operator_log());
    let (_, text) = op.http_get(op.metrics_port, "/metrics").await.unwrap();
    for name in [
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds",
        "cxone_api_requests_total{endpoint=\"submit\",code=\"201\"} 1",
        "cxone_api_request_duration_seconds",
        "cxone_skill_training_jobs{phase=\"Succeeded\"} 1",
        "cxone_token_refreshes_total 1",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert!(!text.contains("ops-secret"), "no secrets in metrics");
}

/// Every command of the README's "Reading status" section, run against a finished job.
#[tokio::test]
async fn readme_status_commands_work() {
    let w = world("readme", sim(1000)).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Reading status")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a Reading status code block");
    w.create_job(guide_job("billing-support", &w.sim_url(), json!({})))
        .await;
    w.wait_job("billing-support", T, "Succeeded", succeeded)
        .await;
    let mut ran = 0;
    for line in section.lines().filter(|l| l.starts_with("kubectl ")) {
        let command = line
            .split(" # ")
            .next()
            .unwrap()
            .replace("cxone-demo", w.ns.name())
            .replacen(
                "kubectl ",
                &format!(
                    "{} --kubeconfig {} ",
                    w.cp.kubectl_path().display(),
                    w.cp.kubeconfig_path().display()
                ),
                2,
            );
        let out = std::process::Command::new("bash")
            .args(["-c", &command])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.trim().is_empty(), "{line} printed nothing");
        ran += 1;
    }
    assert!(ran >= 6, "ran {ran} README commands");
}

#[tokio::test]
async fn active_deadline_cancels_and_fails() {
    let w = world("deadline", sim(60_000)).await;
    w.create_job(guide_job(
        "slow",
        &w.sim_url(),
        json!({"polling": {"activeDeadlineSeconds": 1}}),
    ))
    .await;
    let job = w
        .wait_job("slow", T, "Failed", |j| phase(j) == Some(Phase::Failed))
        .await;
    let c = condition(&job, "Succeeded").unwrap();
    assert_eq!(c.reason, "DeadlineExceeded", "{c:?}");
    assert_eq!(w.sim.stats().jobs_in("CANCELLED"), 1);
}

#[tokio::test]
async fn artifact_urls_are_refreshed_before_they_expire() {
    let config = SimulatorConfig {
        artifact_ttl: Duration::from_secs(40),
        ..sim(1000)
    };
    let w = world("refresh", config).await;
    w.create_job(guide_job("fresh", &w.sim_url(), json!({})))
        .await;
    let first = w.wait_job("fresh", T, "Succeeded", succeeded).await;
    let before = first.status.unwrap();
    let expires = before.artifacts.clone().unwrap().expires_at;
    // A 40 s URL is refreshed at half its remaining life (20 s), well before it expires.
    let refreshed = w
        .wait_job("fresh", Duration::from_secs(35), "new artifact URLs", |j| {
            j.status
                .as_ref()
                .and_then(|s| s.artifacts.as_ref())
                .is_some_and(|a| a.expires_at != expires)
        })
        .await;
    let now = jiff::Timestamp::now();
    let after = refreshed.status.unwrap();
    assert!(after.artifacts.as_ref().unwrap().expires_at.0 > now);
    // One export at completion and one refresh: no storm.
    assert_eq!(w.sim.stats().count("export", 200), 2);
    // The job cache leaves the finished run's evaluation, history and URLs out; the refresh was
    // decided on the whole job (read for it), so the write kept every one of them.
    assert!(after.evaluation.is_some() && after.evaluation == before.evaluation);
    assert!(!after.history.is_empty() && after.history == before.history);
    assert!(after.artifacts.unwrap().model_weights_url.is_some());
    let op = w.operator.as_ref().unwrap();
    let (_, metrics) = op.http_get(op.metrics_port, "/metrics").await.unwrap();
    let status_reads = metrics
        .lines()
        .find(|l| l.starts_with("cxone_skill_job_reads_total{reason=\"status\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        status_reads.is_some_and(|n| n >= 1.0),
        "the refresh read the whole job: {status_reads:?}"
    );
}

#[tokio::test]
async fn deleting_a_job_that_never_submitted_is_immediate() {
    let w = world("delinvalid", sim(1000)).await;
    let mut job = guide_job("never", &w.sim_url(), json!({}));
    job["spec"]["utterances"][0]["text"] = json!("   ");
    w.create_job(job).await;
    w.wait_job("never", T, "Invalid", |j| phase(j) == Some(Phase::Invalid))
        .await;
    w.jobs
        .delete("never", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("never", T).await;
    assert_eq!(w.sim.stats().total("cancel"), 0);
}
