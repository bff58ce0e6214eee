//! Registry copy benchmark: a 256 MiB weights file registered in a real OCI registry by
//! `OciRegistry::push` (streamed from the simulator's signed URL, chunked upload), against
//! `oras push --plain-http` of the same file from disk. Reports the copy's wall time and
//! throughput, the ratio to oras, and how much the bench process's resident memory grew while
//! pushing (sampled from `/proc/self/status`).
//!
//! `make bench` runs it in full (release build; `cargo bench --bench registry`). Under
//! `cargo test` (no `--bench` argument) an 8 MiB smoke run checks that the harness works and the
//! copy is correct; its figures are not meaningful (debug build).
//!
//! Setup: the simulator runs as the project's binary (`simulate --artifact-weights-bytes N`), so
//! the measured process holds only the pushing client; the registry is `docker-registry` on
//! 127.0.0.1 and oras comes from `hack/oci-tools.sh` (tests/support/oci_registry.rs).
//! `CXONE_BENCH_CHUNK_MIB=N` overrides the upload chunk size for tuning.
//!
//! Then the same size through the operator process (`registry/operator.rs`): one job registered
//! into an OCI registry and MLflow, the operator's whole-process RSS growth and the time it spent
//! registering, printed as the registration targets.

#[path = "../tests/support"]
mod support {
    mod envtest;
    pub mod mlflow;
    pub mod oci_registry;
    pub mod operator;
    pub mod trained;
}

#[path = "registry/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cxone_skill_operator::registry::oci::{DEFAULT_UPLOAD_CHUNK_BYTES, OciRegistry};
use cxone_skill_operator::registry::{Documents, ModelSource, RegistryAuth};
use cxone_skill_operator::testkit::provenance;
use serde_json::Value;
use support::oci_registry::{TestRegistry, free_port, run_with_timeout, unique_dir};
use support::trained::{disjoint_intents_payload, train_and_export};

const MIB: f64 = 1024.0 * 1024.0;
/// Longest wait for the simulator to start or a job to complete.
const DEADLINE: Duration = Duration::from_secs(30);
/// Resident-memory growth allowed while pushing (the module's design: two upload chunks).
const RSS_TARGET_MIB: f64 = 16.0;
/// Our throughput relative to oras pushing the same file from disk.
const RATIO_TARGET: f64 = 0.5;

/// The simulator binary, killed on drop.
struct Simulator {
    child: Child,
    base: String,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_simulator(weights_bytes: u64) -> Simulator {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_cxone-skill-operator"))
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--client-id", "bench", "--client-secret", "bench-secret"])
        .args(["--job-duration", "100ms"])
        .args(["--artifact-weights-bytes", &weights_bytes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts");
    let mut sim = Simulator {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(status)) = sim.child.try_wait() {
            panic!("the simulator exited: {status}");
        }
        if let Ok(resp) = reqwest::get(format!("{}/healthz", sim.base)).await
            && resp.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the simulator did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim
}

/// Trains a job to completion and returns its exported artifact URLs.
async fn exported(sim: &Simulator) -> (String, ModelSource) {
    train_and_export(
        &sim.base,
        "bench",
        "bench-secret",
        &disjoint_intents_payload(),
    )
    .await
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    memory_kib_of("self")
}

/// `VmRSS` and `VmHWM` of process `pid` (a number, or `self`), in KiB.
fn memory_kib_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples the `VmRSS` of a process every 2 ms on a thread until stopped; returns the highest
/// value seen.
struct RssSampler {
    pid: String,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    /// Samples this process.
    fn start() -> Self {
        Self::start_for("self")
    }

    fn start_for(pid: &str) -> Self {
        let pid = pid.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(memory_kib_of(&pid).0));
        let thread = {
            let (stop, peak, pid) = (stop.clone(), peak.clone(), pid.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(memory_kib_of(&pid).0, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            pid,
            stop,
            peak,
            thread,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak
            .load(Ordering::Relaxed)
            .max(memory_kib_of(&self.pid).0)
    }
}

struct Figures {
    bytes: u64,
    ours: Duration,
    oras: Duration,
    rss_growth_kib: u64,
    /// Growth of the peak during the measured push (the warm-up may already have reached it).
    hwm_growth_kib: u64,
    /// Growth of the peak from before the warm-up push (same size) to the end: everything the
    /// two pushes needed, connection pools and TLS set-up included.
    hwm_total_growth_kib: u64,
    chunk_bytes: usize,
}

async fn run(weights_bytes: u64) -> Figures {
    let chunk_bytes = std::env::var("CXONE_BENCH_CHUNK_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(DEFAULT_UPLOAD_CHUNK_BYTES, |mib| mib * 1024 * 1024);
    let sim = start_simulator(weights_bytes).await;
    let registry = TestRegistry::start().await;
    let client = OciRegistry::new()
        .unwrap()
        .with_upload_chunk_bytes(chunk_bytes);
    let auth = RegistryAuth::Anonymous;
    let documents = Documents {
        evaluation_json: b"{}".to_vec(),
        audit_json: b"{}".to_vec(),
        picture_svg: b"<svg/>".to_vec(),
        ..Documents::default()
    };
    let metrics: BTreeMap<String, f64> = [("accuracy".to_string(), 0.9)].into_iter().collect();

    let (_, hwm_start) = memory_kib();
    // Warm-up with another job (connection pools, TLS and allocator set-up are not the copy).
    let (warm_id, warm_source) = exported(&sim).await;
    client
        .push(
            &registry.target("bench/warmup"),
            &auth,
            "v1",
            &warm_source,
            &provenance(&warm_id),
            &metrics,
            &documents,
        )
        .await
        .expect("the warm-up push");

    let (id, source) = exported(&sim).await;
    let target = registry.target("bench/ours");
    let (rss_before, hwm_before) = memory_kib();
    let sampler = RssSampler::start();
    let started = Instant::now();
    let pushed = client
        .push(
            &target,
            &auth,
            "v1",
            &source,
            &provenance(&id),
            &metrics,
            &documents,
        )
        .await
        .expect("the measured push");
    let ours = started.elapsed();
    let rss_peak = sampler.finish();
    let (_, hwm_after) = memory_kib();
    assert_eq!(pushed.weights_bytes, weights_bytes);

    // oras: the same file from disk (downloaded once, streamed to a file).
    let dir = unique_dir("cxone-registry-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("model-weights.json");
    {
        use std::io::Write;
        let mut out = std::fs::File::create(&file).unwrap();
        let mut resp = reqwest::get(&source.weights_url).await.unwrap();
        while let Some(piece) = resp.chunk().await.unwrap() {
            out.write_all(&piece).unwrap();
        }
        out.sync_all().unwrap();
    }
    let mut cmd = Command::new(&support::oci_registry::oci_tools().oras);
    cmd.current_dir(&dir)
        .args([
            "push",
            "--plain-http",
            "--registry-config",
            dir.join("oras-auth.json").to_str().unwrap(),
            "--artifact-type",
            "application/vnd.cncf.model.manifest.v1+json",
            &registry.reference("bench/oras:v1"),
            "model-weights.json:application/vnd.cncf.model.weight.v1.raw",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = run_with_timeout(cmd, Duration::from_secs(600));
    let oras = started.elapsed();
    assert!(
        out.status.success(),
        "oras push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both copies hold the same bytes.
    let fetched = registry.oras(&["manifest", "fetch", &registry.reference("bench/oras:v1")]);
    let oras_manifest: Value = serde_json::from_slice(&fetched.stdout).unwrap();
    let ours_manifest = registry.oras(&["manifest", "fetch", &registry.reference("bench/ours:v1")]);
    let ours_manifest: Value = serde_json::from_slice(&ours_manifest.stdout).unwrap();
    assert_eq!(
        oras_manifest["layers"][0]["digest"], ours_manifest["layers"][0]["digest"],
        "oras and the operator stored different weights"
    );
    let _ = std::fs::remove_dir_all(&dir);

    Figures {
        bytes: weights_bytes,
        ours,
        oras,
        rss_growth_kib: rss_peak.saturating_sub(rss_before),
        hwm_growth_kib: hwm_after.saturating_sub(hwm_before),
        hwm_total_growth_kib: hwm_after.saturating_sub(hwm_start),
        chunk_bytes,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let bytes: u64 = if full { 256 << 20 } else { 8 << 20 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = runtime.block_on(run(bytes));
    let mib = f.bytes as f64 / MIB;
    let ours = mib / f.ours.as_secs_f64();
    let oras = mib / f.oras.as_secs_f64();
    let ratio = ours / oras;
    let rss = f.rss_growth_kib as f64 / 1024.0;
    let hwm = f.hwm_growth_kib as f64 / 1024.0;
    let hwm_total = f.hwm_total_growth_kib as f64 / 1024.0;
    println!(
        "registry copy of {mib:.0} MiB ({} build, upload chunks of {} MiB):",
        if full {
            "release"
        } else {
            "debug smoke: the figures only show the harness works"
        },
        f.chunk_bytes as f64 / MIB
    );
    println!(
        "  ours  {:>7.2} s  {ours:>7.1} MiB/s  (signed URL -> registry, streamed)",
        f.ours.as_secs_f64()
    );
    println!(
        "  oras  {:>7.2} s  {oras:>7.1} MiB/s  (oras push --plain-http from disk)",
        f.oras.as_secs_f64()
    );
    println!("  ratio ours/oras {ratio:.2} (target >= {RATIO_TARGET})");
    println!(
        "  RSS growth while pushing {rss:.1} MiB peak (target < {RSS_TARGET_MIB} MiB); VmHWM +{hwm:.1} MiB during the push, +{hwm_total:.1} MiB since before the warm-up push"
    );
    let o = runtime.block_on(operator::run(f.bytes));
    let before = o.rss_before_kib as f64 / 1024.0;
    let growth = o.rss_peak_kib.saturating_sub(o.rss_before_kib) as f64 / 1024.0;
    let after = o.rss_after_kib as f64 / 1024.0;
    // Both copies move the weights once each.
    let moved = 2.0 * mib / o.registering.as_secs_f64();
    let operator_ratio = moved / oras;
    println!(
        "operator process registering one job into an OCI registry and MLflow ({mib:.0} MiB weights):"
    );
    println!(
        "  Registering for {:.2} s: {moved:.1} MiB/s of weights moved (two copies), {operator_ratio:.2} x oras",
        o.registering.as_secs_f64()
    );
    println!(
        "  operator RSS {before:.1} MiB while training, peak {:.1} MiB while registering ({growth:+.1} MiB), {after:.1} MiB 5 s after Succeeded",
        o.rss_peak_kib as f64 / 1024.0
    );
    let verdict = |met: bool| {
        if !full {
            "not judged (smoke run)"
        } else if met {
            "met"
        } else {
            "missed"
        }
    };
    println!("\nTargets (issue \"Memory at the floor\"), registration");
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| registering {mib:.0} MiB into OCI and MLflow grows the operator's RSS < {RSS_TARGET_MIB} MiB | {growth:+.1} MiB (peak {:.1} MiB, {after:.1} MiB after) | {} |",
        o.rss_peak_kib as f64 / 1024.0,
        verdict(growth < RSS_TARGET_MIB)
    );
    println!(
        "| ... at >= {RATIO_TARGET} x oras push throughput | {moved:.1} MiB/s (two copies) against {oras:.1} MiB/s, {operator_ratio:.2} x | {} |",
        verdict(operator_ratio >= RATIO_TARGET)
    );
    if full {
        assert!(
            rss < RSS_TARGET_MIB,
            "resident memory grew by {rss:.1} MiB while pushing (target < {RSS_TARGET_MIB} MiB)"
        );
        if ratio < RATIO_TARGET {
            println!("  note: throughput below {RATIO_TARGET} x oras on this run");
        }
    }
}
