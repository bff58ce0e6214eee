//! The targets of issue "Memory at the floor", each printed as met or missed with its figure,
//! from the reports of one run of the scale scenarios. A target whose scenario did not run says
//! so. The registration target (256 MiB into an OCI registry and MLflow) is measured and printed
//! by `benches/registry.rs`.

use super::Report;
use super::realistic::RealisticReport;

/// One row: what is asked, what was measured, whether it holds (`None`: not measured here).
struct Row {
    target: String,
    measured: String,
    met: Option<bool>,
}

fn row(target: &str, measured: String, met: Option<bool>) -> Row {
    Row {
        target: target.to_string(),
        measured,
        met,
    }
}

const NOT_RUN: &str = "scenario not run";

/// KiB per job from MiB per 1,000 jobs.
fn kib_per_job(mib_per_1000: f64) -> f64 {
    mib_per_1000 * 1024.0 / 1000.0
}

fn memory_rows(runs: &[RealisticReport]) -> Vec<Row> {
    let find = |n: &str| runs.iter().find(|r| r.report.scenario == n);
    let mut rows = Vec::new();
    match find("g") {
        Some(g) => {
            let r = &g.report;
            // A reduced run (`cargo test`, `BENCH_G_STAGES`) shows its figures but judges none.
            let full = r.jobs >= 10_000;
            rows.push(row(
                "(g) steady RSS with 10,000 realistic jobs <= 64 MiB",
                format!("{:.1} MiB ({} jobs)", r.steady_rss_mib, r.jobs),
                full.then_some(r.steady_rss_mib <= 64.0),
            ));
            rows.push(row(
                "(g) peak RSS <= 96 MiB",
                format!("{:.1} MiB", r.peak_rss_mib),
                full.then_some(r.peak_rss_mib <= 96.0),
            ));
            for (kind, what) in [
                ("guide", "a guide-sized job"),
                ("inline", "a 300-utterance job"),
            ] {
                let target = format!("(g) memory per job after settling, {what} <= 5 KiB");
                match g.mib_per_1000.get(kind) {
                    Some(mib) => rows.push(row(
                        &target,
                        format!("{:.2} KiB", kib_per_job(*mib)),
                        full.then_some(kib_per_job(*mib) <= 5.0),
                    )),
                    None => rows.push(row(&target, "no second stage of it".into(), None)),
                }
            }
        }
        None => rows.push(row("(g) 10,000 realistic jobs", NOT_RUN.into(), None)),
    }
    match (find("h0"), find("h")) {
        (Some(base), Some(bg)) => {
            let steady = bg.report.steady_rss_mib - base.report.steady_rss_mib;
            let idle = bg.idle_rss_mib - base.idle_rss_mib;
            let full = bg.report.jobs >= 1000;
            rows.push(row(
                "(h - h0) 20,000 unrelated Secrets/ConfigMaps add <= 8 MiB",
                format!("{steady:+.1} MiB steady, {idle:+.1} MiB idle"),
                full.then_some(steady <= 8.0 && idle <= 8.0),
            ));
        }
        _ => rows.push(row(
            "(h) background of 20,000 objects",
            NOT_RUN.into(),
            None,
        )),
    }
    rows
}

fn run_rows(reports: &[Report]) -> Vec<Row> {
    let mut rows = Vec::new();
    let training: Vec<&Report> = reports
        .iter()
        .filter(|r| {
            (r.scenario == "a" || r.scenario == "g") && r.cpu_percent_while_training.is_finite()
        })
        .collect();
    let cpu: Vec<String> = training
        .iter()
        .map(|r| format!("{} {:.2} %", r.scenario, r.cpu_percent_while_training))
        .collect();
    let cpu_met = training.iter().all(|r| r.cpu_percent_while_training <= 5.0);
    let full = reports
        .iter()
        .any(|r| (r.scenario == "a" || r.scenario == "g") && r.jobs >= 1000);
    rows.push(row(
        "operator CPU <= 5 % of one core while 1,000 jobs train (a, g)",
        if cpu.is_empty() {
            NOT_RUN.into()
        } else {
            cpu.join(", ")
        },
        (full && !cpu.is_empty()).then_some(cpu_met),
    ));
    let over: Vec<String> = reports
        .iter()
        .filter(|r| r.apiserver_writes_per_job > r.phases_per_job + 4.0 + 1e-9)
        .map(|r| {
            format!(
                "{} {:.2} > {:.2}",
                r.scenario,
                r.apiserver_writes_per_job,
                r.phases_per_job + 4.0
            )
        })
        .collect();
    rows.push(row(
        "API writes per job <= phases entered + 4, every scenario",
        if over.is_empty() {
            format!("within in all {}", reports.len())
        } else {
            over.join(", ")
        },
        Some(over.is_empty()),
    ));
    let above: Vec<String> = reports
        .iter()
        .filter(|r| r.status_calls_vs_minimum > 1.0 + 1e-9)
        .map(|r| format!("{} {:.3}", r.scenario, r.status_calls_vs_minimum))
        .collect();
    rows.push(row(
        "CXone status calls per job <= the poll schedule's minimum",
        if above.is_empty() {
            "at or below in all".into()
        } else {
            above.join(", ")
        },
        Some(above.is_empty()),
    ));
    let duplicates: i64 = reports.iter().map(|r| r.duplicate_submissions).sum();
    rows.push(row(
        "no duplicate CXone submission",
        format!("{duplicates}"),
        Some(duplicates == 0),
    ));
    rows
}

/// Prints the targets table.
pub fn print(reports: &[Report], runs: &[RealisticReport]) {
    let mut rows = memory_rows(runs);
    rows.extend(run_rows(reports));
    println!("\nTargets (issue \"Memory at the floor\")");
    println!("| target | measured | |");
    println!("|---|---|---|");
    for r in rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not judged (reduced or missing run)",
        };
        println!("| {} | {} | {verdict} |", r.target, r.measured);
    }
}
