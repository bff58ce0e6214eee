use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied())).map(|c| c.args)
}

#[test]
fn flags_become_a_config() {
    let config = parse(&[
        "--client-id",
        "a",
        "--client-secret",
        "sa",
        "--client-id",
        "b",
        "--client-secret",
        "sb",
        "--job-duration",
        "3s",
        "--rate-limit",
        "20/s",
        "--fault-rate",
        "0.1",
        "--retry-after-format",
        "http-date",
        "--seed",
        "9",
        "--public-url",
        "http://sim:8089/",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    assert_eq!(config.clients.len(), 2);
    assert_eq!(config.clients[1].client_id, "b");
    assert_eq!(config.clients[1].client_secret, "sb");
    assert_eq!(config.clients[1].scopes.len(), 4);
    assert_eq!(config.job_duration, Duration::from_secs(3));
    assert_eq!(config.faults.rate_limit_per_second, Some(20.0));
    assert_eq!(config.faults.fault_rate, 0.1);
    assert_eq!(config.faults.slow_delay_ms, 2000);
    assert_eq!(config.faults.retry_after_format, RetryAfterFormat::HttpDate);
    assert_eq!(config.seed, 9);
    assert_eq!(config.public_url.as_deref(), Some("http://sim:8089"));
    assert!(
        !format!("{config:?}").contains("sb"),
        "secrets are redacted"
    );
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let err = parse(&[]).unwrap().into_config().unwrap_err().to_string();
    assert!(
        err.contains("--client-id") && err.contains("--clients-file"),
        "{err}"
    );
    let err = parse(&["--client-id", "a"])
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(err.to_string().contains("pairs"), "{err}");
    let err = parse(&["--fault-rate", "1.5"]).err().unwrap().to_string();
    assert!(err.contains("between 0 and 1"), "{err}");
    let err = parse(&["--rate-limit", "fast"]).err().unwrap().to_string();
    assert!(err.contains("not a rate"), "{err}");
    let err = parse(&["--job-duration", "forever"])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("duration"), "{err}");
    let err = parse(&[
        "--client-id",
        "a",
        "--client-secret",
        "s",
        "--public-url",
        "sim:80",
    ])
    .unwrap()
    .into_config()
    .unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
    let err = parse(&[
        "--client-id",
        "a",
        "--client-secret",
        "s",
        "--client-id",
        "a",
        "--client-secret",
        "t",
    ])
    .unwrap()
    .into_config()
    .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn rates_accept_units() {
    assert_eq!(rate_arg("20/s"), Ok(20.0));
    assert_eq!(rate_arg("20"), Ok(20.0));
    assert_eq!(rate_arg("600/m"), Ok(10.0));
    assert!(rate_arg("0/s").is_err());
    assert!(rate_arg("5/d").unwrap_err().contains("unit"));
}

#[test]
fn clients_file_lines() {
    let clients = parse_clients(
        "# operator\nop:s3cret\n\nreader:r:ai:training:read\nboth: x : ai:skills:write, ai:training:write\n",
    )
    .unwrap();
    assert_eq!(clients.len(), 3);
    assert_eq!(clients[0].scopes.len(), 4);
    assert_eq!(clients[1].scopes, vec!["ai:training:read"]);
    assert_eq!(clients[2].client_secret, "x");
    assert_eq!(
        clients[2].scopes,
        vec!["ai:skills:write", "ai:training:write"]
    );

    let err = parse_clients("ok:s\nnosecret\n").unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
    let err = parse_clients("a:b:ai:training:reed").unwrap_err();
    assert!(
        err.contains("line 1") && err.contains("unknown scope"),
        "{err}"
    );
    let err = parse_clients("a:b:").unwrap_err();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn admin_and_limit_flags() {
    let base = ["--client-id", "a", "--client-secret", "s"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        parse(&args).map(|a| a.into_config())
    };
    // Defaults: admin off, bounded stores, 2 MiB bodies.
    let config = with(&[]).unwrap().unwrap();
    assert_eq!(config.admin, AdminAccess::Disabled);
    assert_eq!(config.max_jobs, 10_000);
    assert_eq!(config.max_tokens, 10_000);
    assert_eq!(config.max_request_bytes, 2 * 1024 * 1024);
    assert_eq!(config.max_job_memory, 32 * 1024 * 1024);

    let config = with(&[
        "--admin-open",
        "--max-jobs",
        "5",
        "--max-tokens",
        "7",
        "--max-request-bytes",
        "512KiB",
        "--max-job-memory",
        "1MiB",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(config.admin, AdminAccess::Open);
    assert_eq!(
        (config.max_jobs, config.max_tokens, config.max_request_bytes),
        (5, 7, 512 * 1024)
    );
    assert_eq!(config.max_job_memory, 1024 * 1024);

    // --admin-open only on loopback.
    let err = with(&["--admin-open", "--listen", "0.0.0.0:8089"])
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loopback") && err.contains("--admin-token-file"),
        "{err}"
    );
    assert!(
        with(&["--admin-open", "--listen", "[::1]:8089"])
            .unwrap()
            .is_ok()
    );

    // A token file: trimmed, long enough, never printed.
    let dir = std::env::temp_dir().join(format!("cxone-sim-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "  s3cret-admin-token-value\n").unwrap();
    let good = good.to_str().unwrap();
    let config = with(&["--admin-token-file", good, "--listen", "0.0.0.0:1"])
        .unwrap()
        .unwrap();
    assert_eq!(
        config.admin,
        AdminAccess::Token("s3cret-admin-token-value".into())
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let short = dir.join("short");
    std::fs::write(&short, "tiny\n").unwrap();
    let err = with(&["--admin-token-file", short.to_str().unwrap()])
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("tiny"), "{err}");
    let err = with(&["--admin-token-file", dir.join("missing").to_str().unwrap()])
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read admin token file"), "{err}");
    assert!(with(&["--admin-token-file", good, "--admin-open"]).is_err());
    let _ = std::fs::remove_dir_all(&dir);

    // Bad limits.
    for bad in [
        ["--max-request-bytes", "16XB"],
        ["--max-request-bytes", "10"],
        ["--max-request-bytes", "2GiB"],
    ] {
        assert!(with(&bad).is_err(), "{bad:?}");
    }
    let err = with(&["--max-jobs", "0"]).unwrap().unwrap_err().to_string();
    assert!(err.contains("max jobs"), "{err}");
}

#[test]
fn artifact_weights_bytes_flag() {
    let base = ["--client-id", "a", "--client-secret", "s"];
    let config = parse(&base).unwrap().into_config().unwrap();
    assert_eq!(config.artifact_weights_bytes, None, "off by default");
    let mut args = base.to_vec();
    args.extend(["--artifact-weights-bytes", "268435456"]);
    let config = parse(&args).unwrap().into_config().unwrap();
    assert_eq!(config.artifact_weights_bytes, Some(256 * 1024 * 1024));
    assert_eq!(artifact_size_arg("1"), Ok(1));
    assert_eq!(artifact_size_arg("8MiB"), Ok(8 * 1024 * 1024));
    assert_eq!(artifact_size_arg("16GiB"), Ok(16 << 30));
    for bad in ["0", "17GiB", "x", "5TiB", "99999999999999999999"] {
        assert!(artifact_size_arg(bad).is_err(), "{bad}");
    }
    let invalid = SimulatorConfig {
        artifact_weights_bytes: Some(0),
        ..SimulatorConfig::default()
    };
    assert!(
        invalid
            .validate()
            .unwrap_err()
            .contains("artifact weights bytes")
    );
}

#[test]
fn sizes_accept_units() {
    assert_eq!(size_arg("16MiB"), Ok(16 * 1024 * 1024));
    assert_eq!(size_arg("16m"), Ok(16 * 1024 * 1024));
    assert_eq!(size_arg("512KiB"), Ok(512 * 1024));
    assert_eq!(size_arg("1048576"), Ok(1024 * 1024));
    assert_eq!(size_arg("1GiB"), Ok(1024 * 1024 * 1024));
    assert!(size_arg("1023").is_err());
    assert!(size_arg("x").is_err());
    assert!(size_arg("99999999999999999999").is_err());
    assert!(size_arg("5TiB").unwrap_err().contains("unit"));
}
