//! Scale benchmark: the operator binary against a real kube-apiserver + etcd and the CXone
//! simulator, with many jobs. `make bench` runs the full scenarios (release build); under
//! `cargo test` (no `--bench` argument) a reduced smoke run checks that the harness still works
//! and that the hard properties hold (every job finishes, no duplicate submission).
//!
//! Scenarios (issue "Scale and efficiency"): (a) N jobs created at once; (b) many jobs with a
//! bounded number training at any time; (c) operator SIGKILLed and restarted with jobs in flight;
//! (d) a simulator rate limit below what the jobs would like; (e) the guide's example script run
//! as N concurrent copies next to the operator handling N jobs; (f) a few 5-minute jobs. The
//! realistic scenarios (g) 10,000 jobs of three kinds, (h) a background of 20,000 unrelated
//! Secrets and ConfigMaps, (i) a restart with finished jobs on 1 MiB ConfigMaps are described in
//! `benches/scale/realistic.rs`.
//!
//! Environment: `BENCH_SCENARIOS=a,g` runs only the scenarios named; `BENCH_G_STAGES=N` runs the
//! first N stages of (g); `BENCH_OPERATOR_BIN` runs another operator binary (e.g. one built with
//! `--features jemalloc`, see `hack/bench/allocators.sh`); `BENCH_OPERATOR_ENV=K=V,K=V` adds to
//! the operator's environment (e.g. `MALLOC_ARENA_MAX=2`); `BENCH_LABEL` names the run in the JSON
//! lines.

#[path = "../tests/support"]
mod support {
    mod envtest;
    pub mod operator;
    pub mod scale_jobs;
    pub use envtest::ControlPlane;
}

#[path = "scale/realistic.rs"]
mod realistic;
#[path = "scale/targets.rs"]
mod targets;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxone_skill_operator::controller::decide::schedule::PollSchedule;
use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::{Faults, SimulatorConfig};
use futures::StreamExt;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::operator::{CLIENT_ID, CLIENT_SECRET, Launch, World, guide_job};

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    jobs: usize,
    job_duration: Duration,
    /// Keep at most this many jobs unfinished at once (None: create all at once).
    in_flight: Option<usize>,
    /// SIGKILL and restart the operator once this many jobs have a CXone job id.
    kill_at_submitted: Option<usize>,
    sim_rate_limit: Option<f64>,
    operator_rate_limit: f64,
    timeout: Duration,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
struct Report {
    scenario: String,
    jobs: usize,
    job_seconds: f64,
    wall_seconds: f64,
    operator_cpu_seconds: f64,
    peak_rss_mib: f64,
    steady_rss_mib: f64,
    rss_mib_per_1000_jobs: f64,
    cpu_percent_while_training: f64,
    calls_per_job: BTreeMap<String, f64>,
    status_calls_minimum_per_job: f64,
    status_calls_vs_minimum: f64,
    token_requests: u64,
    duplicate_submissions: i64,
    apiserver_writes_per_job: f64,
    /// Phases each job entered, counted by the operator from its own status writes
    /// (`cxone_skill_phase_transitions_total`): writes per job should stay within this + 4.
    phases_per_job: f64,
    /// Whole jobs the operator read from the API server beyond its cache, per job
    /// (`cxone_skill_job_reads_total`: the data to validate, or a status the cache leaves out).
    whole_job_reads_per_job: f64,
    reconciles_per_job: f64,
    completion_to_succeeded_p50_s: f64,
    completion_to_succeeded_p99_s: f64,
    creation_to_submission_p50_s: f64,
    creation_to_submission_p99_s: f64,
    rate_limited_429s: u64,
    rate_limit_wait_seconds: f64,
    max_calls_per_second_after_restart: Option<f64>,
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn apiserver_metrics(cp: &support::ControlPlane) -> String {
    let out = cp
        .kubectl()
        .args(["get", "--raw", "/metrics"])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl get --raw /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requests the API server counted for `resource` with `verb` (`GET`, `LIST`, ...), whatever
/// their outcome.
fn apiserver_requests(cp: &support::ControlPlane, resource: &str, verb: &str) -> f64 {
    let (resource, verb) = (
        format!("resource=\"{resource}\""),
        format!("verb=\"{verb}\""),
    );
    apiserver_metrics(cp)
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(&resource) && l.contains(&verb))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes the API server counted, by verb, for the resources the operator writes.
fn apiserver_writes(cp: &support::ControlPlane) -> f64 {
    let text = apiserver_metrics(cp);
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let is_write = [
            "verb=\"POST\"",
            "verb=\"PATCH\"",
            "verb=\"APPLY\"",
            "verb=\"PUT\"",
            "verb=\"DELETE\"",
        ]
        .iter()
        .any(|v| line.contains(v));
        let ours = [
            "resource=\"skilltrainingjobs\"",
            "resource=\"events\"",
            "resource=\"configmaps\"",
            "resource=\"secrets\"",
        ]
        .iter()
        .any(|r| line.contains(r));
        if is_write && ours {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    total
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let idx = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[idx.min(values.len() - 1)]
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The running operator's metrics (empty when it does not answer).
async fn operator_metrics(w: &World) -> String {
    let Some(op) = w.operator.as_ref() else {
        return String::new();
    };
    op.http_get(op.metrics_port, "/metrics")
        .await
        .map(|(_, t)| t)
        .unwrap_or_default()
}

/// The operator binary and extra environment from `BENCH_OPERATOR_BIN` and `BENCH_OPERATOR_ENV`.
fn launch_from_env() -> Launch {
    let binary = std::env::var_os("BENCH_OPERATOR_BIN").map(std::path::PathBuf::from);
    if let Some(b) = &binary {
        assert!(
            b.is_file(),
            "BENCH_OPERATOR_BIN: {} is not a file",
            b.display()
        );
    }
    let env = std::env::var("BENCH_OPERATOR_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("BENCH_OPERATOR_ENV: {kv:?} is not K=V"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Launch { binary, env }
}

async fn run(s: &Scenario, launch: &Launch) -> Report {
    let started = Instant::now();
    let faults = Faults {
        rate_limit_per_second: s.sim_rate_limit,
        ..Faults::default()
    };
    let config = SimulatorConfig {
        job_duration: s.job_duration,
        faults,
        // The scenarios measure the operator: the simulator keeps every job they create.
        max_jobs: 100_000,
        max_job_memory: 1 << 30,
        ..SimulatorConfig::default()
    };
    let mut w = World::new(&format!("bench-{}", s.name), config).await;
    w.put_secret("cxone-credentials", CLIENT_ID, CLIENT_SECRET)
        .await;
    let writes_before = apiserver_writes(w.cp);
    let op_args = [
        format!("--cxone-rate-limit={}", s.operator_rate_limit),
        "--concurrency=16".to_string(),
    ];
    let op_args: Vec<&str> = op_args.iter().map(String::as_str).collect();
    w.start_operator_with(&op_args, launch);

    // Watch the jobs: when each is first seen Succeeded, and its CXone job id.
    let seen: Arc<Mutex<HashMap<String, (jiff::Timestamp, String)>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let jobs = w.jobs.clone();
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(job)) = stream.next().await {
                let job: SkillTrainingJob = job;
                let st = job.status.unwrap_or_default();
                let name = job.metadata.name.unwrap_or_default();
                if st.phase == Some(Phase::Succeeded) {
                    let mut seen = seen.lock().unwrap();
                    seen.entry(name)
                        .or_insert((jiff::Timestamp::now(), st.job_id.unwrap_or_default()));
                }
            }
        })
    };

    let mut created_at: HashMap<String, jiff::Timestamp> = HashMap::new();
    let mut next = 0usize;
    let mut peak_rss: f64 = 0.0;
    let mut cpu_before_kill = 0.0;
    let mut metrics_before_kill = String::new();
    let mut killed = false;
    let mut restart_at: Option<Instant> = None;
    let mut call_samples: Vec<(Instant, u64)> = Vec::new();
    let mut training_cpu: Vec<(Instant, f64)> = Vec::new();
    let deadline = Instant::now() + s.timeout;
    let sim_url = w.sim_url();
    loop {
        let done = seen.lock().unwrap().len();
        let limit = s.in_flight.map(|f| done + f).unwrap_or(s.jobs).min(s.jobs);
        while next < limit {
            let name = format!("job-{next:05}");
            let job: SkillTrainingJob =
                serde_json::from_value(guide_job(&name, &sim_url, json!({}))).unwrap();
            created_at.insert(name.clone(), jiff::Timestamp::now());
            w.jobs
                .create(&PostParams::default(), &job)
                .await
                .expect("create job");
            next += 1;
        }
        let pid = w.operator.as_ref().and_then(|o| o.pid()).unwrap_or(0);
        peak_rss = peak_rss.max(proc_rss_mib(pid, "VmRSS:"));
        let stats = w.sim.stats();
        let calls: u64 = stats.calls.values().flat_map(|c| c.values()).sum();
        call_samples.push((Instant::now(), calls));
        let training = stats.jobs_in("TRAINING")
            + stats.jobs_in("EVALUATING")
            + stats.jobs_in("PROVISIONING")
            + stats.jobs_in("QUEUED");
        if training >= (s.in_flight.unwrap_or(s.jobs) as u64 * 9 / 10).max(1) {
            training_cpu.push((Instant::now(), proc_cpu_seconds(pid)));
        }
        if let Some(k) = s.kill_at_submitted
            && !killed
            && stats.jobs_created as usize >= k
        {
            cpu_before_kill = proc_cpu_seconds(pid);
            metrics_before_kill = operator_metrics(&w).await;
            peak_rss = peak_rss.max(proc_rss_mib(pid, "VmHWM:"));
            w.operator.as_mut().unwrap().kill();
            w.start_operator_with(&op_args, launch);
            killed = true;
            restart_at = Some(Instant::now());
        }
        if done >= s.jobs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: only {done} of {} jobs succeeded within {:?}\n{}",
            s.name,
            s.jobs,
            s.timeout,
            w.operator_log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let op = w.operator.as_ref().unwrap();
    let pid = op.pid().unwrap_or(0);
    let steady = proc_rss_mib(pid, "VmRSS:");
    peak_rss = peak_rss.max(proc_rss_mib(pid, "VmHWM:"));
    let cpu = cpu_before_kill + proc_cpu_seconds(pid);
    let metrics = operator_metrics(&w).await;
    watch.abort();
    let writes = apiserver_writes(w.cp) - writes_before - s.jobs as f64 - 1.0;

    let stats = w.sim.stats();
    let n = s.jobs as f64;
    let calls_per_job: BTreeMap<String, f64> = stats
        .calls
        .iter()
        .filter(|(k, _)| k.as_str() != "token")
        .map(|(k, v)| (k.clone(), v.values().sum::<u64>() as f64 / n))
        .collect();
    let minimum = PollSchedule::default().polls_needed(s.job_duration) as f64;
    let timelines: HashMap<String, _> = w
        .sim
        .job_timelines()
        .into_iter()
        .map(|t| (t.job_id.clone(), t))
        .collect();
    let seen = seen.lock().unwrap().clone();
    let mut completion = Vec::new();
    let mut submission = Vec::new();
    for (name, (at, job_id)) in &seen {
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
    let cpu_while_training = match (training_cpu.first(), training_cpu.last()) {
        (Some(a), Some(b)) if b.0 > a.0 && !killed => {
            (b.1 - a.1) / (b.0 - a.0).as_secs_f64() * 100.0
        }
        _ => f64::NAN,
    };
    let max_after_restart = restart_at.map(|r| {
        let after: Vec<&(Instant, u64)> = call_samples.iter().filter(|(t, _)| *t >= r).collect();
        after
            .windows(5)
            .map(|w| (w[4].1 - w[0].1) as f64 / (w[4].0 - w[0].0).as_secs_f64().max(0.001))
            .fold(0.0, f64::max)
    });
    Report {
        scenario: s.name.to_string(),
        jobs: s.jobs,
        job_seconds: s.job_duration.as_secs_f64(),
        wall_seconds: wall,
        operator_cpu_seconds: cpu,
        peak_rss_mib: peak_rss,
        steady_rss_mib: steady,
        rss_mib_per_1000_jobs: steady / n * 1000.0,
        cpu_percent_while_training: cpu_while_training,
        status_calls_minimum_per_job: minimum,
        status_calls_vs_minimum: calls_per_job.get("status").copied().unwrap_or(0.0) / minimum,
        calls_per_job,
        token_requests: stats.tokens_issued,
        duplicate_submissions: stats.jobs_created as i64 - s.jobs as i64,
        apiserver_writes_per_job: writes / n,
        phases_per_job: [&metrics_before_kill, &metrics]
            .iter()
            .map(|m| metric_sum(m, "cxone_skill_phase_transitions_total"))
            .sum::<f64>()
            / n,
        whole_job_reads_per_job: [&metrics_before_kill, &metrics]
            .iter()
            .map(|m| metric_sum(m, "cxone_skill_job_reads_total"))
            .sum::<f64>()
            / n,
        reconciles_per_job: metric_sum(&metrics, "controller_runtime_reconcile_total") / n,
        completion_to_succeeded_p50_s: percentile(&mut completion.clone(), 0.5),
        completion_to_succeeded_p99_s: percentile(&mut completion, 0.99),
        creation_to_submission_p50_s: percentile(&mut submission.clone(), 0.5),
        creation_to_submission_p99_s: percentile(&mut submission, 0.99),
        rate_limited_429s: stats.rate_limited,
        rate_limit_wait_seconds: metric_sum(&metrics, "cxone_rate_limit_wait_seconds_total"),
        max_calls_per_second_after_restart: max_after_restart,
    }
}

/// (e): the guide's script as N concurrent processes, next to the operator doing N jobs.
async fn scripts_vs_operator(n: usize, job_duration: Duration) -> Option<serde_json::Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = root.join("../shared/reference/guide_complete_example.py");
    if !guide.is_file() {
        eprintln!("(e) skipped: {} not found", guide.display());
        return None;
    }
    let venv = std::process::Command::new(root.join("hack/python-venv.sh"))
        .output()
        .ok()?;
    let python = format!(
        "{}/bin/python",
        String::from_utf8_lossy(&venv.stdout).trim()
    );
    let config = SimulatorConfig {
        clients: vec![cxone_skill_operator::simulator::ClientCredentials::new(
            "your_client_id",
            "your_client_secret",
        )],
        job_duration,
        ..SimulatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let sim = cxone_skill_operator::simulator::spawn(config, listener)
        .await
        .ok()?;
    let dir = std::env::temp_dir().join(format!("cxone-bench-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(root.join("hack/bench/guide_scripts.py"))
        .arg(n.to_string())
        .arg(&guide)
        .arg(sim.base_url())
        .arg(&dir);
    // Blocking wait on a worker thread, so the simulator keeps serving on this runtime.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .ok()?
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stats = sim.stats();
    v["callsPerJob"] = json!(
        stats
            .calls
            .iter()
            .map(|(k, c)| (k.clone(), c.values().sum::<u64>() as f64 / n as f64))
            .collect::<BTreeMap<_, _>>()
    );
    v["tokenRequests"] = json!(stats.tokens_issued);
    Some(v)
}

fn print_table(reports: &[Report]) {
    println!(
        "\n{:<6}{:>6}{:>8}{:>8}{:>8}{:>8}{:>9}{:>8}{:>9}{:>8}{:>8}{:>7}{:>7}{:>8}{:>8}{:>8}{:>7}{:>8}",
        "scen",
        "jobs",
        "wall s",
        "cpu s",
        "peakMiB",
        "rssMiB",
        "MiB/1k",
        "cpu%",
        "st/min",
        "tokens",
        "writes",
        "ph+4",
        "reads",
        "recon",
        "c2s p99",
        "sub p99",
        "429s",
        "dup"
    );
    for r in reports {
        println!(
            "{:<6}{:>6}{:>8.1}{:>8.2}{:>8.1}{:>8.1}{:>9.2}{:>8.2}{:>9.3}{:>8}{:>8.2}{:>7.2}{:>7.2}{:>8.2}{:>8.2}{:>8.2}{:>7}{:>8}",
            r.scenario,
            r.jobs,
            r.wall_seconds,
            r.operator_cpu_seconds,
            r.peak_rss_mib,
            r.steady_rss_mib,
            r.rss_mib_per_1000_jobs,
            r.cpu_percent_while_training,
            r.status_calls_vs_minimum,
            r.token_requests,
            r.apiserver_writes_per_job,
            r.phases_per_job + 4.0,
            r.whole_job_reads_per_job,
            r.reconciles_per_job,
            r.completion_to_succeeded_p99_s,
            r.creation_to_submission_p99_s,
            r.rate_limited_429s,
            r.duplicate_submissions
        );
    }
    println!(
        "(st/min: CXone status calls per job / the poll schedule's minimum; writes: API server writes per job; ph+4: phases the operator's writes entered per job + 4, the writes budget; reads: whole jobs read beyond the cache per job; recon: reconciles per job; c2s: CXone COMPLETED to status Succeeded; sub: creation to CXone submission; dup: duplicate CXone jobs; MiB/1k: steady RSS per 1,000 jobs, over the idle operator's for g-i; cpu%: of one core while 90 % of the jobs were training, the highest stage for g-i)"
    );
}

/// Prints a JSON line for `value`, tagged with the run's label.
fn print_json(label: &str, value: &impl serde::Serialize) {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    v["label"] = json!(label);
    println!("{v}");
}

/// The realistic scenarios, full (`make bench`) or reduced (`cargo test`).
fn realistic_scenarios(full: bool) -> Vec<realistic::Realistic> {
    use realistic::{Kind, Mix, Realistic};
    let secs = Duration::from_secs;
    const MIB: usize = 1024 * 1024;
    let (g, i, c) = (Kind::Guide, Kind::Inline, Kind::ConfigMap);
    if full {
        // Half of the jobs are the guide's, a fifth inline, the rest on ConfigMaps; every kind
        // follows a stage of another kind at least twice (its growth is measured there). An
        // inline stage is the slowest: the API server's work on 1,000 objects of 25 KB.
        let turn = [g, i, c, g, c, g, i, c, g, g];
        let stages = std::env::var("BENCH_G_STAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10usize);
        vec![
            Realistic {
                name: "g",
                stages: (0..stages)
                    .map(|k| (1000, Mix::Only(turn[k % turn.len()])))
                    .collect(),
                job_duration: secs(40),
                inline_utterances: 300,
                data_bytes: MIB,
                data_sets: 50,
                background: 0,
                restart: false,
                operator_rate_limit: 200.0,
                stage_timeout: secs(1800),
                quiet: secs(3),
            },
            Realistic {
                name: "h0",
                stages: vec![(1000, Mix::Even)],
                job_duration: secs(30),
                inline_utterances: 300,
                data_bytes: MIB,
                data_sets: 10,
                background: 0,
                restart: false,
                operator_rate_limit: 200.0,
                stage_timeout: secs(1800),
                quiet: secs(3),
            },
            Realistic {
                name: "h",
                stages: vec![(1000, Mix::Even)],
                job_duration: secs(30),
                inline_utterances: 300,
                data_bytes: MIB,
                data_sets: 10,
                background: 20_000,
                restart: false,
                operator_rate_limit: 200.0,
                stage_timeout: secs(1800),
                quiet: secs(3),
            },
            Realistic {
                name: "i",
                stages: vec![(200, Mix::Only(Kind::ConfigMap))],
                job_duration: secs(20),
                inline_utterances: 300,
                data_bytes: MIB,
                data_sets: 0,
                background: 0,
                restart: true,
                operator_rate_limit: 200.0,
                stage_timeout: secs(600),
                quiet: secs(5),
            },
        ]
    } else {
        let small = |name, stages, background, restart| Realistic {
            name,
            stages,
            job_duration: secs(2),
            inline_utterances: 300,
            data_bytes: 128 * 1024,
            data_sets: if restart { 0 } else { 2 },
            background,
            restart,
            operator_rate_limit: 100.0,
            stage_timeout: secs(90),
            quiet: secs(1),
        };
        vec![
            small(
                "g",
                [g, i, c].iter().map(|k| (6, Mix::Only(*k))).collect(),
                0,
                false,
            ),
            // The figure of (h) is a difference between two full runs; here the background
            // only has to be created, watched and left alone.
            small("h", vec![(6, Mix::Even)], 200, false),
            small("i", vec![(4, Mix::Only(Kind::ConfigMap))], 0, true),
        ]
    }
}

/// The lines of figures the realistic scenarios add under the table.
fn print_realistic(runs: &[realistic::RealisticReport]) {
    for r in runs {
        let name = &r.report.scenario;
        if r.stages.len() > 1 {
            let curve: Vec<String> = r
                .stages
                .iter()
                .map(|s| format!("{}k {:.1}", s.jobs_total as f64 / 1000.0, s.steady_rss_mib))
                .collect();
            println!(
                "({name}) steady RSS MiB: idle {:.1}, {}",
                r.idle_rss_mib,
                curve.join(", ")
            );
            let kinds: Vec<String> = r
                .mib_per_1000
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!(
                "({name}) MiB per 1,000 jobs by kind (steady RSS growth of its stages): {}",
                kinds.join(", ")
            );
            let peaks: Vec<String> = r
                .stages
                .iter()
                .map(|s| format!("{} {:.1}", s.kinds, s.peak_rss_mib))
                .collect();
            println!(
                "({name}) peak RSS MiB after each stage: {}",
                peaks.join(", ")
            );
            let cpu: Vec<String> = r
                .stages
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.2}% ({:.0}s)",
                        s.kinds, s.cpu_percent_while_training, s.training_window_seconds
                    )
                })
                .collect();
            println!(
                "({name}) operator CPU of one core while the stage's jobs trained (window): {}",
                cpu.join(", ")
            );
        }
        if let Some(x) = &r.restart {
            println!(
                "({name}) restart with {} finished jobs: ConfigMap GETs {}, ConfigMap LISTs {}, job GETs {}, API writes {}, reconciles {}, quiet after {:.1}s; RSS steady {:.1} MiB, peak {:.1} MiB",
                x.finished_jobs,
                x.configmap_gets,
                x.configmap_lists,
                x.job_gets,
                x.writes,
                x.reconciles,
                x.seconds_to_quiet,
                x.steady_rss_mib,
                x.peak_rss_mib
            );
        }
    }
    let find = |n: &str| runs.iter().find(|r| r.report.scenario == n);
    if let (Some(base), Some(bg)) = (find("h0"), find("h")) {
        println!(
            "(h) the background adds: idle {:+.1} MiB ({:.1} → {:.1}), steady {:+.1} MiB ({:.1} → {:.1}), peak {:+.1} MiB ({:.1} → {:.1}), CPU {:+.1} s",
            bg.idle_rss_mib - base.idle_rss_mib,
            base.idle_rss_mib,
            bg.idle_rss_mib,
            bg.report.steady_rss_mib - base.report.steady_rss_mib,
            base.report.steady_rss_mib,
            bg.report.steady_rss_mib,
            bg.report.peak_rss_mib - base.report.peak_rss_mib,
            base.report.peak_rss_mib,
            bg.report.peak_rss_mib,
            bg.report.operator_cpu_seconds - base.report.operator_cpu_seconds
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let launch = launch_from_env();
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "default".into());
    let secs = Duration::from_secs;
    let scenarios: Vec<Scenario> = if full {
        vec![
            Scenario {
                name: "a",
                jobs: 1000,
                job_duration: secs(60),
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: None,
                operator_rate_limit: 200.0,
                timeout: secs(900),
            },
            Scenario {
                name: "b",
                jobs: 5000,
                job_duration: secs(30),
                in_flight: Some(500),
                kill_at_submitted: None,
                sim_rate_limit: None,
                operator_rate_limit: 200.0,
                timeout: secs(2400),
            },
            Scenario {
                name: "c",
                jobs: 2000,
                job_duration: secs(90),
                in_flight: None,
                kill_at_submitted: Some(2000),
                sim_rate_limit: None,
                operator_rate_limit: 100.0,
                timeout: secs(1800),
            },
            // A 5-minute job (issue 3's figure): CXone calls against the schedule's minimum and
            // API server writes per job, on a few jobs so the run is only as long as the job.
            Scenario {
                name: "f",
                jobs: 10,
                job_duration: secs(300),
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: None,
                operator_rate_limit: 10.0,
                timeout: secs(600),
            },
            Scenario {
                name: "d",
                jobs: 2000,
                job_duration: secs(30),
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: Some(20.0),
                operator_rate_limit: 50.0,
                timeout: secs(2400),
            },
        ]
    } else {
        vec![
            Scenario {
                name: "a",
                jobs: 40,
                job_duration: secs(8),
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: None,
                operator_rate_limit: 100.0,
                timeout: secs(90),
            },
            Scenario {
                name: "c",
                jobs: 30,
                job_duration: secs(10),
                in_flight: None,
                kill_at_submitted: Some(30),
                sim_rate_limit: None,
                operator_rate_limit: 100.0,
                timeout: secs(90),
            },
            Scenario {
                name: "d",
                jobs: 20,
                job_duration: secs(6),
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: Some(5.0),
                operator_rate_limit: 50.0,
                timeout: secs(120),
            },
        ]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let only: Option<Vec<String>> = std::env::var("BENCH_SCENARIOS")
        .ok()
        .map(|o| o.split(',').map(|s| s.trim().to_string()).collect());
    // `h` selects both of its runs (h0 without the background, h with it).
    let selected = |name: &str| {
        only.as_ref().is_none_or(|o| {
            o.iter()
                .any(|s| s == name || (s == "h" && name.starts_with('h')))
        })
    };
    let mut reports = Vec::new();
    for s in &scenarios {
        if !selected(s.name) {
            continue;
        }
        eprintln!(
            "scenario ({}) {} jobs of {:?}...",
            s.name, s.jobs, s.job_duration
        );
        let r = runtime.block_on(run(s, &launch));
        // The properties that must hold at any scale.
        assert_eq!(
            r.duplicate_submissions, 0,
            "({}) duplicate CXone submissions",
            s.name
        );
        print_json(&label, &r);
        reports.push(r);
    }
    let mut realistic_runs = Vec::new();
    for s in realistic_scenarios(full) {
        if !selected(s.name) {
            continue;
        }
        let jobs: usize = s.stages.iter().map(|(n, _)| n).sum();
        eprintln!(
            "scenario ({}) {jobs} jobs of {:?} in {} stages, {} background objects{}...",
            s.name,
            s.job_duration,
            s.stages.len(),
            s.background,
            if s.restart { ", then a restart" } else { "" }
        );
        let r = runtime.block_on(realistic::run(&s, &launch));
        assert_eq!(
            r.report.duplicate_submissions, 0,
            "({}) duplicate CXone submissions",
            s.name
        );
        if let Some(x) = &r.restart {
            // Finished jobs need nothing from their ConfigMaps after a restart.
            assert_eq!(
                x.configmap_gets, 0.0,
                "({}) ConfigMap reads after a restart with {} finished jobs",
                s.name, x.finished_jobs
            );
        }
        print_json(&label, &r);
        realistic_runs.push(r);
    }
    reports.extend(realistic_runs.iter().map(|r| r.report.clone()));
    print_table(&reports);
    print_realistic(&realistic_runs);
    targets::print(&reports, &realistic_runs);
    if selected("e") {
        let n = if full { 50 } else { 5 };
        let d = Duration::from_secs(if full { 20 } else { 6 });
        let scripts = runtime.block_on(scripts_vs_operator(n, d));
        let operator = runtime.block_on(run(
            &Scenario {
                name: "e",
                jobs: n,
                job_duration: d,
                in_flight: None,
                kill_at_submitted: None,
                sim_rate_limit: None,
                operator_rate_limit: 100.0,
                timeout: secs(300),
            },
            &launch,
        ));
        println!(
            "\n(e) {n} copies of the guide's script: {}",
            scripts
                .map(|v| v.to_string())
                .unwrap_or_else(|| "not run".into())
        );
        println!(
            "(e) the operator, same {n} jobs: cpu {:.2} s, peak RSS {:.1} MiB, calls per job {:?}, token requests {}",
            operator.operator_cpu_seconds,
            operator.peak_rss_mib,
            operator.calls_per_job,
            operator.token_requests
        );
    }
}
