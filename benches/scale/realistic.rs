//! The realistic scenarios of the scale benchmark (issue "Memory that does not grow with training
//! data or with the cluster"): jobs of three kinds (the guide's six utterances, 300 inline
//! utterances in 8 labels, about 0.9 MiB of ConfigMap data in two ConfigMaps), created in stages;
//! after each stage every job has Succeeded and the operator is quiet, and its RSS then is the
//! stage's steady figure.
//!
//! (g) 10,000 jobs in stages of 1,000, one kind per stage in turn: the growth curve, the memory
//! of each kind, CPU while 1,000 jobs train. (h) the same 1,000 mixed jobs with and without
//! 20,000 unrelated Secrets and ConfigMaps (10 KB `last-applied-configuration` annotation each)
//! in the watched namespace. (i) 200 jobs on 1 MiB of ConfigMap data each, finished, then the
//! operator restarted: the ConfigMap reads the API server counts until it is quiet again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxone_skill_operator::controller::decide::schedule::PollSchedule;
use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::SimulatorConfig;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::support::operator::{CLIENT_ID, CLIENT_SECRET, Launch, World, guide_job};
use super::support::scale_jobs::{config_map_job, inline_job, utterance_document};
use super::{
    Report, apiserver_requests, apiserver_writes, metric_sum, proc_cpu_seconds, proc_rss_mib,
};

/// The three kinds of job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// The guide's job: six utterances, three labels.
    Guide,
    /// 300 inline utterances in 8 labels.
    Inline,
    /// About 0.9 MiB of utterances in two ConfigMaps (`spec.utterancesFrom`).
    ConfigMap,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Guide => "guide",
            Kind::Inline => "inline",
            Kind::ConfigMap => "cm",
        }
    }
}

/// Which kinds a stage creates.
#[derive(Clone, Copy, Debug)]
pub enum Mix {
    Only(Kind),
    /// The three kinds in turn.
    Even,
}

impl Mix {
    fn kind(self, i: usize) -> Kind {
        match self {
            Mix::Only(k) => k,
            Mix::Even => [Kind::Guide, Kind::Inline, Kind::ConfigMap][i % 3],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mix::Only(k) => k.prefix(),
            Mix::Even => "mixed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Realistic {
    pub name: &'static str,
    /// Jobs per stage and their kinds; stages run one after the other.
    pub stages: Vec<(usize, Mix)>,
    pub job_duration: Duration,
    /// Inline utterances of an `Inline` job.
    pub inline_utterances: usize,
    /// Bytes of utterance data of a `ConfigMap` job, split over two ConfigMaps.
    pub data_bytes: usize,
    /// Distinct datasets the `ConfigMap` jobs share (0: one per job).
    pub data_sets: usize,
    /// Unrelated Secrets and ConfigMaps (half each) in the watched namespace before the operator
    /// starts.
    pub background: usize,
    /// Restart the operator (SIGTERM, start again) once every job has Succeeded.
    pub restart: bool,
    pub operator_rate_limit: f64,
    pub stage_timeout: Duration,
    /// How long the operator's reconcile count must stay unchanged to count as quiet.
    pub quiet: Duration,
}

/// The figures of one stage, read once its jobs have Succeeded and the operator is quiet.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageReport {
    pub kinds: String,
    pub jobs: usize,
    pub jobs_total: usize,
    pub wall_seconds: f64,
    pub steady_rss_mib: f64,
    /// VmHWM of the operator so far.
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    /// CPU of kube-apiserver during the stage (not the operator's; it shows where time went).
    pub apiserver_cpu_seconds: f64,
    /// Operator CPU while at least 90 % of the stage's jobs were queued or training (NaN when that
    /// window was shorter than 5 s).
    pub cpu_percent_while_training: f64,
    pub training_window_seconds: f64,
}

/// What the watch saw of each job: when it was first Succeeded, its CXone job id, the phases it
/// went through.
#[derive(Default)]
struct Seen {
    succeeded: HashMap<String, (jiff::Timestamp, String)>,
    phases: HashMap<String, Vec<Phase>>,
}

fn watch_stage(
    jobs: Api<SkillTrainingJob>,
    stage: usize,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(&format!("bench-stage={stage}"));
        let mut stream = watcher(jobs, config).applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(job) = event else { continue };
            let job: SkillTrainingJob = job;
            let name = job.metadata.name.unwrap_or_default();
            let st = job.status.unwrap_or_default();
            let mut seen = seen.lock().unwrap();
            if let Some(p) = st.phase {
                let phases = seen.phases.entry(name.clone()).or_default();
                if !phases.contains(&p) {
                    phases.push(p);
                }
            }
            if st.phase == Some(Phase::Succeeded) {
                seen.succeeded
                    .entry(name)
                    .or_insert((jiff::Timestamp::now(), st.job_id.unwrap_or_default()));
            }
        }
    })
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `n` Secrets and ConfigMaps (half each) that no job uses, each carrying what `kubectl apply`
/// leaves: a 10 KB last-applied-configuration annotation.
async fn create_background(w: &World, n: usize) {
    let secrets: Api<Secret> = w.ns.api();
    let cms: Api<ConfigMap> = w.ns.api();
    let pad = |kind: &str, name: &str| {
        let head = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"{kind}\",\"metadata\":{{\"name\":\"{name}\"}},\"data\":{{\"settings\":\""
        );
        let tail = "\"}}";
        format!(
            "{head}{}{tail}",
            "x".repeat(10_240 - head.len() - tail.len())
        )
    };
    futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, cms) = (secrets.clone(), cms.clone());
            async move {
                if i % 2 == 0 {
                    let name = format!("bg-secret-{i:05}");
                    let s: Secret = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": name, "annotations": {LAST_APPLIED: pad("Secret", &name)}},
                        "stringData": {"settings": "value"}
                    }))
                    .expect("a Secret");
                    secrets.create(&PostParams::default(), &s).await.map(|_| ())
                } else {
                    let name = format!("bg-config-{i:05}");
                    let c: ConfigMap = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "annotations": {LAST_APPLIED: pad("ConfigMap", &name)}},
                        "data": {"settings": "value"}
                    }))
                    .expect("a ConfigMap");
                    cms.create(&PostParams::default(), &c).await.map(|_| ())
                }
            }
        })
        .buffer_unordered(16)
        .for_each(|r| async move { r.expect("create a background object") })
        .await;
}

const FORMATS: [(&str, &str); 3] = [("jsonl", "jsonl"), ("csv", "csv"), ("json", "json")];

/// The two ConfigMaps of dataset `d` (`data-<d>-a`, `data-<d>-b`), each with half of
/// `bytes`, in the format `d` picks; returns the `utterancesFrom` entries.
fn data_sources(d: usize) -> Vec<(String, String, &'static str)> {
    let (format, ext) = FORMATS[d % 3];
    ["a", "b"]
        .iter()
        .map(|part| {
            (
                format!("data-{d:04}-{part}"),
                format!("utterances.{ext}"),
                format,
            )
        })
        .collect()
}

async fn create_data_sets(w: &World, sets: usize, bytes: usize) {
    let cms: Api<ConfigMap> = w.ns.api();
    futures::stream::iter(0..sets)
        .map(|d| {
            let cms = cms.clone();
            async move {
                for (i, (name, key, format)) in data_sources(d).into_iter().enumerate() {
                    // Text numbers of the two halves never overlap (a job's texts are distinct).
                    let first = (d % 16) * 60_000 + i * 30_000;
                    let doc = utterance_document(format, bytes / 2, first);
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {key: doc}
                    }))
                    .expect("a ConfigMap");
                    cms.create(&PostParams::default(), &cm)
                        .await
                        .expect("create a data ConfigMap");
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

/// Polls the operator's metrics until its reconcile count has not changed for `quiet` (and it is
/// ready); returns the count. Panics after `timeout`.
async fn wait_quiet(w: &World, quiet: Duration, timeout: Duration, peak: &mut f64) -> f64 {
    let op = w.operator.as_ref().expect("an operator");
    let pid = op.pid().unwrap_or(0);
    let deadline = Instant::now() + timeout;
    let mut last: Option<(f64, Instant)> = None;
    loop {
        *peak = peak.max(proc_rss_mib(pid, "VmRSS:"));
        let ready = matches!(op.http_get(op.probe_port, "/readyz").await, Some((200, _)));
        let count = op
            .http_get(op.metrics_port, "/metrics")
            .await
            .map(|(_, t)| metric_sum(&t, "controller_runtime_reconcile_total"));
        match (ready, count, last) {
            (true, Some(c), Some((l, since))) if c == l => {
                if since.elapsed() >= quiet {
                    return c;
                }
            }
            (true, Some(c), _) => last = Some((c, Instant::now())),
            _ => last = None,
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not become ready and quiet within {timeout:?}\n{}",
            tail(&w.operator_log())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(20).collect();
    lines.join("\n")
}

/// What a realistic scenario measured, beyond the common [`Report`].
#[derive(Debug, Default, serde::Serialize)]
pub struct RealisticReport {
    pub report: Report,
    pub stages: Vec<StageReport>,
    /// Steady RSS after the operator started and synced, before any job.
    pub idle_rss_mib: f64,
    /// Steady RSS growth per 1,000 jobs of one kind (stages of that kind but the first stage).
    pub mib_per_1000: BTreeMap<String, f64>,
    pub restart: Option<RestartReport>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RestartReport {
    pub finished_jobs: usize,
    /// API server `apiserver_request_total` for configmaps between the restart and quiet.
    pub configmap_gets: f64,
    pub configmap_lists: f64,
    pub job_gets: f64,
    pub reconciles: f64,
    pub writes: f64,
    pub seconds_to_quiet: f64,
    pub steady_rss_mib: f64,
    pub peak_rss_mib: f64,
}

pub async fn run(s: &Realistic, launch: &Launch) -> RealisticReport {
    let started = Instant::now();
    let config = SimulatorConfig {
        job_duration: s.job_duration,
        // The scenarios measure the operator: the simulator keeps every job they create.
        max_jobs: 100_000,
        max_job_memory: 1 << 30,
        ..SimulatorConfig::default()
    };
    let mut w = World::new(&format!("bench-{}", s.name), config).await;
    w.put_secret("cxone-credentials", CLIENT_ID, CLIENT_SECRET)
        .await;
    let sim_url = w.sim_url();
    let total: usize = s.stages.iter().map(|(n, _)| n).sum();
    let cm_jobs: usize = s
        .stages
        .iter()
        .map(|(n, mix)| (0..*n).filter(|i| mix.kind(*i) == Kind::ConfigMap).count())
        .sum();
    let sets = if s.data_sets == 0 {
        cm_jobs
    } else {
        s.data_sets.min(cm_jobs)
    };
    let setup = Instant::now();
    create_data_sets(&w, sets, s.data_bytes).await;
    create_background(&w, s.background).await;
    eprintln!(
        "({}) {sets} datasets of {} KiB and {} background objects created in {:.1}s",
        s.name,
        s.data_bytes / 1024,
        s.background,
        setup.elapsed().as_secs_f64()
    );

    let writes_before = apiserver_writes(w.cp);
    let op_args = [
        format!("--cxone-rate-limit={}", s.operator_rate_limit),
        "--concurrency=16".to_string(),
    ];
    let op_args: Vec<&str> = op_args.iter().map(String::as_str).collect();
    w.start_operator_with(&op_args, launch);
    let mut peak = 0.0f64;
    wait_quiet(&w, s.quiet, Duration::from_secs(180), &mut peak).await;
    let pid = w.operator.as_ref().and_then(|o| o.pid()).unwrap_or(0);
    let idle_rss = proc_rss_mib(pid, "VmRSS:");

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut created_at: HashMap<String, jiff::Timestamp> = HashMap::new();
    let mut stages = Vec::new();
    let mut next = 0usize;
    let mut data_set = 0usize;
    for (k, (n, mix)) in s.stages.iter().enumerate() {
        let stage_started = Instant::now();
        let cpu_before = proc_cpu_seconds(pid);
        let apiserver_before = proc_cpu_seconds(w.cp.apiserver_pid());
        let watch = watch_stage(w.jobs.clone(), k, seen.clone());
        let done_before = seen.lock().unwrap().succeeded.len();
        let mut batch = Vec::with_capacity(*n);
        for i in 0..*n {
            let kind = mix.kind(i);
            let name = format!("{}-{:05}", kind.prefix(), next + i);
            let mut job = match kind {
                Kind::Guide => guide_job(&name, &sim_url, json!({})),
                Kind::Inline => inline_job(&name, &sim_url, s.inline_utterances),
                Kind::ConfigMap => {
                    let d = data_set % sets.max(1);
                    data_set += 1;
                    config_map_job(&name, &sim_url, &data_sources(d))
                }
            };
            job["metadata"]["labels"] = json!({"bench-stage": k.to_string()});
            batch.push((name, job));
        }
        next += n;
        let jobs = w.jobs.clone();
        let stamps: Vec<(String, jiff::Timestamp)> = futures::stream::iter(batch)
            .map(|(name, job)| {
                let jobs = jobs.clone();
                async move {
                    let job: SkillTrainingJob = serde_json::from_value(job).expect("a job");
                    let at = jiff::Timestamp::now();
                    jobs.create(&PostParams::default(), &job)
                        .await
                        .expect("create job");
                    (name, at)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        created_at.extend(stamps);

        let deadline = Instant::now() + s.stage_timeout;
        let mut training_cpu: Vec<(Instant, f64)> = Vec::new();
        loop {
            let done = seen.lock().unwrap().succeeded.len() - done_before;
            peak = peak.max(proc_rss_mib(pid, "VmRSS:"));
            let stats = w.sim.stats();
            let running = stats.jobs_in("TRAINING")
                + stats.jobs_in("EVALUATING")
                + stats.jobs_in("PROVISIONING")
                + stats.jobs_in("QUEUED");
            if running >= (*n as u64 * 9 / 10).max(1) {
                training_cpu.push((Instant::now(), proc_cpu_seconds(pid)));
            }
            if done >= *n {
                break;
            }
            if Instant::now() > deadline {
                let seen = seen.lock().unwrap();
                let mut last_phase: BTreeMap<String, usize> = BTreeMap::new();
                for phases in seen.phases.values() {
                    if let Some(p) = phases.last() {
                        *last_phase.entry(format!("{p:?}")).or_default() += 1;
                    }
                }
                panic!(
                    "({}) stage {k}: only {done} of {n} jobs succeeded within {:?}; latest phases {last_phase:?}\n{}",
                    s.name,
                    s.stage_timeout,
                    tail(&w.operator_log())
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        watch.abort();
        wait_quiet(&w, s.quiet, Duration::from_secs(120), &mut peak).await;
        let (window, cpu_pct) = match (training_cpu.first(), training_cpu.last()) {
            (Some(a), Some(b)) if (b.0 - a.0) >= Duration::from_secs(5) => {
                let secs = (b.0 - a.0).as_secs_f64();
                (secs, (b.1 - a.1) / secs * 100.0)
            }
            (Some(a), Some(b)) => ((b.0 - a.0).as_secs_f64(), f64::NAN),
            _ => (0.0, f64::NAN),
        };
        let stage = StageReport {
            kinds: mix.label().to_string(),
            jobs: *n,
            jobs_total: next,
            wall_seconds: stage_started.elapsed().as_secs_f64(),
            steady_rss_mib: proc_rss_mib(pid, "VmRSS:"),
            peak_rss_mib: peak.max(proc_rss_mib(pid, "VmHWM:")),
            cpu_seconds: proc_cpu_seconds(pid) - cpu_before,
            apiserver_cpu_seconds: proc_cpu_seconds(w.cp.apiserver_pid()) - apiserver_before,
            cpu_percent_while_training: cpu_pct,
            training_window_seconds: window,
        };
        eprintln!(
            "({}) stage {k}: {} {} jobs ({} in all) in {:.1}s: steady RSS {:.1} MiB, peak {:.1} MiB, CPU {:.1}s (API server {:.1}s), {:.2}% while training ({:.0}s window)",
            s.name,
            stage.jobs,
            stage.kinds,
            stage.jobs_total,
            stage.wall_seconds,
            stage.steady_rss_mib,
            stage.peak_rss_mib,
            stage.cpu_seconds,
            stage.apiserver_cpu_seconds,
            stage.cpu_percent_while_training,
            stage.training_window_seconds
        );
        stages.push(stage);
    }

    let op = w.operator.as_ref().expect("an operator");
    let steady = proc_rss_mib(pid, "VmRSS:");
    peak = peak.max(proc_rss_mib(pid, "VmHWM:"));
    let cpu = proc_cpu_seconds(pid);
    let metrics = op
        .http_get(op.metrics_port, "/metrics")
        .await
        .map(|(_, t)| t)
        .unwrap_or_default();
    let mut reconciles = metric_sum(&metrics, "controller_runtime_reconcile_total");
    let wall = started.elapsed().as_secs_f64();

    let restart = if s.restart {
        let reads = |cp: &super::support::ControlPlane| {
            (
                apiserver_requests(cp, "configmaps", "GET"),
                apiserver_requests(cp, "configmaps", "LIST"),
                apiserver_requests(cp, "skilltrainingjobs", "GET"),
                apiserver_writes(cp),
            )
        };
        let before = reads(w.cp);
        let restarted = Instant::now();
        assert!(
            w.operator.as_mut().expect("an operator").terminate(),
            "the operator did not stop on SIGTERM"
        );
        w.start_operator_with(&op_args, launch);
        let mut peak_after = 0.0f64;
        let count = wait_quiet(&w, s.quiet, Duration::from_secs(300), &mut peak_after).await;
        let after = reads(w.cp);
        let pid = w.operator.as_ref().and_then(|o| o.pid()).unwrap_or(0);
        reconciles += count;
        Some(RestartReport {
            finished_jobs: total,
            configmap_gets: after.0 - before.0,
            configmap_lists: after.1 - before.1,
            job_gets: after.2 - before.2,
            reconciles: count,
            writes: after.3 - before.3,
            seconds_to_quiet: restarted.elapsed().as_secs_f64(),
            steady_rss_mib: proc_rss_mib(pid, "VmRSS:"),
            peak_rss_mib: peak_after.max(proc_rss_mib(pid, "VmHWM:")),
        })
    } else {
        None
    };

    // The bench's own writes: one create per job.
    let writes = apiserver_writes(w.cp) - writes_before - total as f64;
    let stats = w.sim.stats();
    let n = total as f64;
    let calls_per_job: BTreeMap<String, f64> = stats
        .calls
        .iter()
        .filter(|(k, _)| k.as_str() != "token")
        .map(|(k, v)| (k.clone(), v.values().sum::<u64>() as f64 / n))
        .collect();
    let minimum = PollSchedule::default().polls_needed(s.job_duration) as f64;
    let seen = seen.lock().unwrap();
    // The phases each job entered, from the operator's own status writes (a watch can miss a
    // phase that lasted less than a round trip).
    let phases_per_job = metric_sum(&metrics, "cxone_skill_phase_transitions_total") / n;
    let timelines: HashMap<String, _> = w
        .sim
        .job_timelines()
        .into_iter()
        .map(|t| (t.job_id.clone(), t))
        .collect();
    let mut completion = Vec::new();
    let mut submission = Vec::new();
    for (name, (at, job_id)) in &seen.succeeded {
        if let Some(t) = timelines.get(job_id) {
            if let Some(done) = t.completes_at {
                completion.push((at.as_millisecond() - done.as_millisecond()) as f64 / 1000.0);
            }
            if let Some(c) = created_at.get(name) {
                submission
                    .push((t.created_at.as_millisecond() - c.as_millisecond()) as f64 / 1000.0);
            }
        }
    }
    // Growth per kind: each stage's steady RSS against the stage before it (the first stage also
    // pays for warming up: connection pools, runtime, allocator arenas).
    let mut per_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for pair in stages.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        per_kind
            .entry(b.kinds.clone())
            .or_default()
            .push((b.steady_rss_mib - a.steady_rss_mib) / b.jobs as f64 * 1000.0);
    }
    let mib_per_1000 = per_kind
        .into_iter()
        .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
        .collect();
    let training: Vec<f64> = stages
        .iter()
        .map(|stage| stage.cpu_percent_while_training)
        .filter(|c| c.is_finite())
        .collect();
    let report = Report {
        scenario: s.name.to_string(),
        jobs: total,
        job_seconds: s.job_duration.as_secs_f64(),
        wall_seconds: wall,
        operator_cpu_seconds: cpu,
        peak_rss_mib: peak,
        steady_rss_mib: steady,
        rss_mib_per_1000_jobs: (steady - idle_rss) / n * 1000.0,
        cpu_percent_while_training: training.iter().copied().fold(f64::NAN, f64::max),
        status_calls_minimum_per_job: minimum,
        status_calls_vs_minimum: calls_per_job.get("status").copied().unwrap_or(0.0) / minimum,
        calls_per_job,
        token_requests: stats.tokens_issued,
        duplicate_submissions: stats.jobs_created as i64 - total as i64,
        apiserver_writes_per_job: writes / n,
        phases_per_job,
        whole_job_reads_per_job: metric_sum(&metrics, "cxone_skill_job_reads_total") / n,
        reconciles_per_job: reconciles / n,
        completion_to_succeeded_p50_s: super::percentile(&mut completion.clone(), 0.5),
        completion_to_succeeded_p99_s: super::percentile(&mut completion, 0.99),
        creation_to_submission_p50_s: super::percentile(&mut submission.clone(), 0.5),
        creation_to_submission_p99_s: super::percentile(&mut submission, 0.99),
        rate_limited_429s: stats.rate_limited,
        rate_limit_wait_seconds: metric_sum(&metrics, "cxone_rate_limit_wait_seconds_total"),
        max_calls_per_second_after_restart: None,
    };
    RealisticReport {
        report,
        stages,
        idle_rss_mib: idle_rss,
        mib_per_1000,
        restart,
    }
}
