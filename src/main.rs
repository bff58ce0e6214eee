//! `cxone-skill-operator`: the operator binary and its offline tools. Parses the command line
//! and hands each subcommand to the library (`controller::run`, `simulator::run`, `cli`, `crd`);
//! it owns only the global allocator, logging set-up, exit codes and the async runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cxone_skill_operator::cli::{self, OutputFormat};
use cxone_skill_operator::evaluation::EvaluationOptions;
use cxone_skill_operator::simulator;

// jemalloc by default (Cargo.toml); `--no-default-features` keeps the system allocator, and
// `hack/bench/allocators.sh` compares them.
#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!("features `jemalloc` and `mimalloc` each select the global allocator: pick one");

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (jemalloc's weak `malloc_conf` symbol, under the
/// prefix `tikv-jemalloc-sys` gives it). Without a background thread, jemalloc purges unused
/// pages only when some thread allocates, so an idle operator would keep the pages of its last
/// peak (a relist, a batch of datasets parsed) for good; with it, pages unused for a second are
/// returned within about a second (`dirty_decay_ms`), and `muzzy_decay_ms:0` skips the lazy
/// stage that would keep them counted in RSS. `_RJEM_MALLOC_CONF` in the environment overrides
/// these at start (`hack/bench/allocators.sh`, README "Benchmarks").
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cxone-skill-operator",
    version,
    about = "Trains NICE CXone AI skills from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<cxone_skill_operator::controller::RunArgs>),
    /// Print the SkillTrainingJob CustomResourceDefinition (YAML).
    Crd,
    /// Run a simulator of the CXone AI training API (for demos, tests and staging).
    Simulate(Box<simulator::SimulateArgs>),
    /// Check SkillTrainingJob manifests (with the ConfigMaps they use) and utterance data files
    /// offline, with the operator's rules. Exit 1 if any file is invalid.
    Validate {
        /// Manifests (.yaml, .yml, .json) and data files (.jsonl, .csv, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check each job's `spec.connection` against the CXone base URLs an operator
        /// allows (its `--allowed-endpoints`, comma-separated; `*` matches one DNS label).
        #[arg(long, value_delimiter = ',')]
        allowed_endpoints: Vec<String>,
        /// Also check each job's `spec.registry` against the registries an operator allows (its
        /// `--allowed-registries`, comma-separated).
        #[arg(long, value_delimiter = ',')]
        allowed_registries: Vec<String>,
        /// As the operator's `--allow-plain-http-registries`.
        #[arg(long)]
        allow_plain_http_registries: bool,
    },
    /// Analyse a CXone evaluation response offline, as the operator does.
    Evaluate {
        /// JSON file holding the response of GET .../jobs/{jobId}/evaluation.
        #[arg(long)]
        input: PathBuf,
        /// Recommend the threshold with the most coverage whose precision is at least this.
        #[arg(long)]
        min_precision: Option<f64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(args.log_format);
            run_async(cxone_skill_operator::controller::run(*args), |e| {
                tracing::error!("{e:#}")
            })
        }
        Command::Crd => print_crd(),
        Command::Simulate(args) => {
            init_tracing();
            run_async(simulator::run(*args), |e| eprintln!("error: {e:#}"))
        }
        Command::Validate {
            files,
            allowed_endpoints,
            allowed_registries,
            allow_plain_http_registries,
        } => match allowlists(
            &allowed_endpoints,
            &allowed_registries,
            allow_plain_http_registries,
        ) {
            Ok(allow) => validate_files(&files, &allow),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Evaluate {
            input,
            min_precision,
            output,
        } => evaluate(&input, min_precision, output),
    }
}

/// `crd`: the CustomResourceDefinition on stdout.
fn print_crd() -> ExitCode {
    match cxone_skill_operator::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The allowlists `validate` checks jobs against, as the operator's flags would give them; `Err`
/// names the flag that does not parse.
fn allowlists(
    allowed_endpoints: &[String],
    allowed_registries: &[String],
    allow_plain_http_registries: bool,
) -> Result<cli::Allowlists, String> {
    let mut allow = cli::Allowlists::default();
    if !allowed_endpoints.is_empty() {
        let endpoints = cxone_skill_operator::cxone::EndpointAllowlist::parse(allowed_endpoints)
            .map_err(|e| format!("--allowed-endpoints: {e}"))?;
        allow.endpoints = Some(endpoints);
    }
    if !allowed_registries.is_empty() {
        let registries = cxone_skill_operator::registry::allow::RegistryAllowlist::parse(
            allowed_registries,
            allow_plain_http_registries,
        )
        .map_err(|e| format!("--allowed-registries: {e}"))?;
        allow.registries = Some(registries);
    }
    Ok(allow)
}

/// `validate`: one verdict line per file; failure when any file is invalid.
fn validate_files(files: &[PathBuf], allow: &cli::Allowlists) -> ExitCode {
    let verdicts = cli::validate_paths(files, allow);
    let mut ok = true;
    for v in &verdicts {
        println!("{}", v.render());
        ok &= v.is_valid();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `evaluate`: the analysis of an evaluation response file, as JSON or a table.
fn evaluate(input: &Path, min_precision: Option<f64>, output: OutputFormat) -> ExitCode {
    let options = EvaluationOptions {
        min_precision,
        ..EvaluationOptions::default()
    };
    let report = match cli::evaluate_file(input, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        },
        OutputFormat::Table => print!("{}", cli::render_table(&report)),
    }
    ExitCode::SUCCESS
}

/// Runs `f` on a multi-threaded runtime; failures go to `report`.
fn run_async(
    f: impl std::future::Future<Output = anyhow::Result<()>>,
    report: impl FnOnce(&anyhow::Error),
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: cxone_skill_operator::controller::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cxone_skill_operator::controller::LogFormat::Json => builder.json().init(),
        cxone_skill_operator::controller::LogFormat::Text => builder.init(),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
