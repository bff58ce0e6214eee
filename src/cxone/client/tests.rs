use super::*;

#[test]
fn endpoints() {
    let e = Endpoint::for_region("us2-01").unwrap();
    assert_eq!(e.base_url().as_str(), "https://api.us2-01.cxone.com/");
    assert_eq!(
        e.token_url().as_str(),
        "https://api.us2-01.cxone.com/oauth/token"
    );
    assert!(Endpoint::for_region("evil.com/x").is_err());
    let e = Endpoint::new("http://127.0.0.1:8089/prefix/", None).unwrap();
    assert_eq!(
        e.token_url().as_str(),
        "http://127.0.0.1:8089/prefix/oauth/token"
    );
    assert_eq!(
        join(e.base_url(), "/api/v2/ai/skills/training/jobs")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:8089/prefix/api/v2/ai/skills/training/jobs"
    );
    assert!(Endpoint::new("ftp://x", None).is_err());
    assert!(Endpoint::new("https://user:pw@x", None).is_err());
    assert!(Endpoint::new("not a url", None).is_err());
    assert!(Endpoint::new("https://x?a=b", None).is_err());
}

#[test]
fn limits_per_call_and_their_names() {
    let limits = ResponseLimits::default();
    assert_eq!(limits.success(Call::Evaluation), 16 * 1024 * 1024);
    for call in [
        Call::Token,
        Call::Submit,
        Call::Status,
        Call::Export,
        Call::Cancel,
    ] {
        assert_eq!(limits.success(call), 1024 * 1024, "{call}");
    }
    assert_eq!(limits.error, 64 * 1024);
    // The chart's default concurrency times the evaluation limit fits its memory limit.
    assert!(8 * limits.evaluation <= 256 * 1024 * 1024 / 2);
    assert_eq!(human_bytes(16 * 1024 * 1024), "16 MiB");
    assert_eq!(human_bytes(64 * 1024), "64 KiB");
    assert_eq!(human_bytes(1000), "1000 bytes");
    assert_eq!(human_bytes(1536 * 1024), "1536 KiB");
}

#[test]
fn job_ids_are_path_safe() {
    assert!(check_job_id("job-0123abc").is_ok());
    for bad in ["", "..", "a/b", "a?b", "a b", &"x".repeat(129)] {
        assert!(check_job_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn missing_scope_from_header_or_grant() {
    let granted = Some(BTreeSet::from(["ai:training:read".to_string()]));
    assert_eq!(
        missing_scopes(
            Call::Submit,
            Some(
                "Bearer error=\"insufficient_scope\", scope=\"ai:skills:write ai:training:write\""
            ),
            &None
        ),
        vec!["ai:skills:write", "ai:training:write"]
    );
    assert_eq!(
        missing_scopes(Call::Submit, None, &granted),
        vec!["ai:skills:write", "ai:training:write"]
    );
    assert!(missing_scopes(Call::Submit, None, &None).is_empty());
}
