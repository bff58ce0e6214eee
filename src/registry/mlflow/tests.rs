use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::api::*;
use super::keys::*;
use super::wire::*;
use super::*;

fn base(uri: &str) -> Url {
    api_base(uri).expect("valid tracking URI")
}

#[test]
fn tracking_uris_keep_their_prefix() {
    let auth = RegistryAuth::Anonymous;
    for (uri, want) in [
        (
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5000/api/2.0/mlflow/runs/create",
        ),
        (
            "https://mlflow.example.com/prefix/",
            "https://mlflow.example.com/prefix/api/2.0/mlflow/runs/create",
        ),
        (
            "https://mlflow.example.com/a/b//",
            "https://mlflow.example.com/a/b/api/2.0/mlflow/runs/create",
        ),
    ] {
        let api = Api::new(uri, &auth).unwrap();
        assert_eq!(api.endpoint("api/2.0/mlflow/runs/create").as_str(), want);
    }
    for bad in [
        "ftp://h/x",
        "not a url",
        "http://h/x?token=secret",
        "http://h/#frag",
        "file:///tmp",
    ] {
        let e = api_base(bad).unwrap_err();
        assert!(matches!(e, RegistryError::Rejected(_)), "{bad}: {e:?}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
    let e = api_base("https://user:hunter2@mlflow.example/x?y").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn artifact_uris_map_onto_the_proxy_like_the_mlflow_client() {
    let b = base("http://127.0.0.1:5000/prefix/");
    let root = ArtifactRoot::parse(&b, "mlflow-artifacts:/1/0a1b2c/artifacts").unwrap();
    assert_eq!(
        root.url.as_str(),
        "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/0a1b2c/artifacts"
    );
    assert_eq!(
        root.file_url("model/model-weights.json").as_str(),
        "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/0a1b2c/artifacts/model/model-weights.json"
    );
    assert_eq!(root.listing_path(""), "1/0a1b2c/artifacts");
    assert_eq!(root.listing_path("model"), "1/0a1b2c/artifacts/model");

    // Runs of `/` collapse; the tracking server's own host may be named.
    let b = base("http://127.0.0.1:5000");
    for uri in [
        "mlflow-artifacts:///1//r/artifacts/",
        "mlflow-artifacts://127.0.0.1:5000/1/r/artifacts",
        "mlflow-artifacts://127.0.0.1/1/r/artifacts",
    ] {
        let root = ArtifactRoot::parse(&b, uri).unwrap();
        assert_eq!(
            root.url.as_str(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts",
            "{uri}"
        );
    }

    for bad in [
        "s3://bucket/1/r/artifacts",
        "file:///tmp/mlruns/1/r/artifacts",
        "mlflow-artifacts://evil.example/1/r/artifacts",
        "mlflow-artifacts://127.0.0.1:5001/1/r/artifacts",
        "mlflow-artifacts:/1/../../etc",
        "mlflow-artifacts:/1/./r",
        "mlflow-artifacts:/1/r%2F../x",
        "mlflow-artifacts:/1/r?x=1",
        "mlflow-artifacts:/",
        "mlflow-artifacts:",
    ] {
        let e = ArtifactRoot::parse(&b, bad).unwrap_err();
        assert!(matches!(e, RegistryError::Rejected(_)), "{bad}: {e:?}");
    }
}

#[test]
fn metric_and_param_keys_are_what_the_server_accepts() {
    for (key, want) in [
        ("accuracy", "accuracy"),
        ("macro_f1", "macro_f1"),
        ("eval/accuracy", "eval/accuracy"),
        ("f1@0.5", "f1_0.5"),
        ("précision", "pr_cision"),
        ("a//b/./c/", "a/b/c"),
        ("/abs", "abs"),
        ("../up", "__/up"),
        ("..x", "_..x"),
        ("a/../b", "a/__/b"),
        ("", "_"),
        ("/", "_"),
        ("label 'x' <y>", "label _x_ _y_"),
    ] {
        assert_eq!(sanitize_key(key), want, "{key:?}");
    }
    let long = sanitize_key(&"k".repeat(400));
    assert_eq!(long.len(), MAX_KEY_CHARS);
    // Every result passes the checks MLflow 3.17 makes of a key.
    let accepted = |k: &str| {
        k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.: /".contains(c))
            && !k.starts_with('/')
            && !k.starts_with("..")
            && k != "."
            && !k.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            && k.len() <= MAX_KEY_CHARS
    };
    for key in [
        "a/",
        "x/..",
        "./.",
        "a/.",
        &format!("{}/..", "z".repeat(248)),
    ] {
        let s = sanitize_key(key);
        assert!(accepted(&s), "{key:?} -> {s:?}");
    }

    let keys = unique_keys([("f1@x", 1), ("f1_x", 2), ("f1#x", 3)]);
    assert_eq!(
        keys,
        vec![
            ("f1_x".to_string(), 1),
            ("f1_x_2".to_string(), 2),
            ("f1_x_3".to_string(), 3)
        ]
    );
    let long = "q".repeat(300);
    let keys = unique_keys([(long.as_str(), ()), (long.as_str(), ())]);
    assert_eq!(keys[1].0.len(), MAX_KEY_CHARS);
    assert!(keys[1].0.ends_with("_2"));
}

#[test]
fn filters_never_break_out_of_their_quotes() {
    assert_eq!(
        tag_filter(JOB_ID_TAG, "job-1"),
        "tags.`cxone.job_id` = 'job-1'"
    );
    assert_eq!(
        tag_filter(JOB_ID_TAG, "it's"),
        "tags.`cxone.job_id` LIKE 'it_s'"
    );
    assert_eq!(
        attribute_filter("name", r"x' OR name != 'y\"),
        "name LIKE 'x_ OR name != _y_'"
    );
    assert_eq!(
        attribute_filter("name", r#"a "b" %_"#),
        r#"name = 'a "b" %_'"#
    );
    // Whatever the value, the filter has exactly the two quotes it opened and closed.
    for value in ["'", "''", r"\", r"\'", "a'b'c", "\n'", "%'_\\"] {
        let f = filter_value(value);
        assert_eq!(f.matches('\'').count(), 2, "{value:?}: {f}");
        assert!(!f.contains('\\'), "{value:?}: {f}");
    }
}

fn provenance() -> Provenance {
    Provenance {
        namespace: "team-a".into(),
        name: "intents".into(),
        uid: "0000-1111".into(),
        generation: 3,
        run: 2,
        cxone_job_id: "job-42".into(),
        skill_id: "skill-abc".into(),
        dataset_digest: format!("sha256:{}", "ab".repeat(32)),
        created: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        source: "kubernetes://team-a/skilltrainingjobs/intents".into(),
        params: [
            ("epochs".to_string(), "10".to_string()),
            ("dataset_digest".to_string(), "user value".to_string()),
            ("long".to_string(), "v".repeat(7000)),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn params_and_tags_carry_the_provenance() {
    let p = provenance();
    let params = run_params(&p);
    assert_eq!(
        params[0],
        ("dataset_digest".into(), p.dataset_digest.clone())
    );
    assert!(params.contains(&("dataset_digest_2".into(), "user value".into())));
    assert!(params.contains(&("epochs".into(), "10".into())));
    let long = params.iter().find(|(k, _)| k == "long").unwrap();
    assert_eq!(
        long.1.chars().count(),
        MAX_PARAM_VALUE_CHARS + 1,
        "cut, with an ellipsis"
    );
    let tags: BTreeMap<String, String> = run_tags(&p).into_iter().collect();
    assert_eq!(tags[JOB_ID_TAG], "job-42");
    assert_eq!(tags["mlflow.runName"], "intents-2");
    assert_eq!(tags["cxone.generation"], "3");
    assert_eq!(tags["cxone.uid"], "0000-1111");
    for k in tags.keys() {
        assert_eq!(&sanitize_key(k), k, "tag keys are valid as they are");
    }
}

#[test]
fn log_batches_respect_the_server_limits() {
    let params: Vec<(String, String)> = (0..250)
        .map(|i| (format!("p{i:03}"), "x".repeat(5000)))
        .collect();
    let metrics: BTreeMap<String, f64> = (0..2500)
        .map(|i| (format!("m{i:04}"), f64::from(i) / 10.0))
        .chain([
            ("nan".to_string(), f64::NAN),
            ("inf".to_string(), f64::INFINITY),
        ])
        .collect();
    let tags: Vec<(String, String)> = (0..150)
        .map(|i| (format!("t{i:03}"), "y".repeat(100)))
        .collect();
    let batches = log_batches(&params, &metrics, &tags, 1_700_000_000_000);
    let (mut np, mut nm, mut nt) = (0, 0, 0);
    for b in &batches {
        let p = b["params"].as_array().unwrap().len();
        let m = b["metrics"].as_array().unwrap().len();
        let t = b["tags"].as_array().unwrap().len();
        assert!(
            p <= 100 && t <= 100 && m <= 1000 && p + m + t <= 1000,
            "{p} {m} {t}"
        );
        assert!(b.to_string().len() < 1_000_000);
        (np, nm, nt) = (np + p, nm + m, nt + t);
    }
    assert_eq!((np, nm, nt), (250, 2502, 150));
    let all_metrics: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["metrics"].as_array().unwrap())
        .collect();
    let nan = all_metrics.iter().find(|m| m["key"] == "nan").unwrap();
    assert_eq!(nan["value"], "NaN");
    assert_eq!(nan["timestamp"], 1_700_000_000_000i64);
    assert_eq!(nan["step"], 0);
    let inf = all_metrics.iter().find(|m| m["key"] == "inf").unwrap();
    assert_eq!(inf["value"], "Infinity");

    // Nothing to log: no request.
    assert!(log_batches(&[], &BTreeMap::new(), &[], 0).is_empty());
}

#[test]
fn server_values_are_read_defensively() {
    assert_eq!(metric_value(&json!(0.5)), Some(0.5));
    assert_eq!(metric_value(&json!("0.25")), Some(0.25));
    assert_eq!(metric_value(&json!("NaN")), None);
    assert_eq!(metric_value(&json!("Infinity")), None);
    assert_eq!(metric_value(&json!(null)), None);
    assert_eq!(metric_value(&json!({"x": 1})), None);
    assert_eq!(file_size(&json!(12)), Some(12));
    assert_eq!(file_size(&json!("12")), Some(12));
    assert_eq!(file_size(&json!(-1)), None);
    assert_eq!(version_number("10"), 10);
    assert_eq!(version_number("x"), u64::MAX);
    // Answers with missing or mistyped fields parse into defaults or a Rejected error.
    let v: VersionAnswer = parse(json!({}), "x").unwrap();
    assert!(v.model_version.version.is_empty());
    let Err(e) = parse::<VersionAnswer>(json!({"model_version": 5}), "x") else {
        panic!("a number is not a model version");
    };
    assert!(matches!(e, RegistryError::Rejected(_)));
}

/// Reads one HTTP/1.1 request head (up to the blank line) from `stream`.
async fn read_head(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            return (head, buf[end + 4..].to_vec());
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the request head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A one-shot source on loopback: answers its first request with `declared` as the
/// Content-Length and `body` as the bytes actually sent, then closes.
async fn source(declared: usize, body: Vec<u8>) -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    format!("http://{addr}/w.json?expires=1&signature=s3cr3t-sig")
}

/// A one-shot artifact proxy on loopback: reads the upload (by its Content-Length, else to
/// the end of the connection), answers 200, and hands back the request head and body.
async fn proxy() -> (Url, tokio::sync::oneshot::Receiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (head, mut body) = read_head(&mut stream).await;
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut chunk = [0u8; 4096];
        while length.is_none_or(|n| body.len() < n) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await;
        let _ = tx.send((head, body));
    });
    (base, rx)
}

/// `Mlflow::copy_from_source` of `url` to `model/w.json` of a run on the proxy at `base`.
async fn copy_to_proxy(base: &Url, url: &str) -> Result<(u64, String), RegistryError> {
    let auth = RegistryAuth::Anonymous;
    let api = Api {
        base: base.clone(),
        auth: &auth,
    };
    let root = ArtifactRoot::parse(base, "mlflow-artifacts:/1/r/artifacts").unwrap();
    Mlflow::new()
        .unwrap()
        .copy_from_source(&api, &root, "model/w.json", url)
        .await
}

#[tokio::test]
async fn uploads_stream_with_the_sources_declared_length() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let url = source(body.len(), body.clone()).await;
    let (base, received) = proxy().await;
    let (size, sha256) = copy_to_proxy(&base, &url).await.unwrap();
    assert_eq!(size, body.len() as u64);
    assert_eq!(
        sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    let (head, uploaded) = received.await.unwrap();
    assert!(
        head.starts_with("put /api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/w.json "),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(uploaded, body);
}

#[tokio::test]
async fn a_short_download_fails_the_upload_as_a_source_error() {
    let url = source(100_000, vec![b'x'; 1000]).await;
    let (base, _received) = proxy().await;
    let e = copy_to_proxy(&base, &url).await.unwrap_err();
    assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
    assert!(e.retryable());
    let text = e.to_string();
    assert!(text.contains("/w.json?…"), "{text}");
    assert!(
        !text.contains("s3cr3t") && !text.contains("signature"),
        "{text}"
    );
}

#[test]
fn refusals_are_classified() {
    let refusal = |status: u16, code: &str| CallError::Status {
        status: StatusCode::from_u16(status).unwrap(),
        code: code.into(),
        message: "no".into(),
        shown: "http://h/api".into(),
    };
    assert!(matches!(
        refusal(401, "").classify("x"),
        RegistryError::Auth(_)
    ));
    assert!(matches!(
        refusal(403, "PERMISSION_DENIED").classify("x"),
        RegistryError::Auth(_)
    ));
    for s in [429, 500, 502, 503] {
        assert!(matches!(
            refusal(s, "").classify("x"),
            RegistryError::Unreachable(_)
        ));
    }
    for s in [302, 400, 404, 409] {
        assert!(matches!(
            refusal(s, "").classify("x"),
            RegistryError::Rejected(_)
        ));
    }
    let text = refusal(400, "INVALID_PARAMETER_VALUE")
        .classify("create the run")
        .to_string();
    assert_eq!(
        text,
        "the registry rejected the request: create the run (http://h/api): HTTP 400 INVALID_PARAMETER_VALUE: no"
    );
    assert!(refusal(400, "RESOURCE_ALREADY_EXISTS").is_code("RESOURCE_ALREADY_EXISTS"));
    assert!(!CallError::Other(RegistryError::Rejected("x".into())).is_code(""));
}

/// The one size cap on the MLflow path (it had none): a source that announces more than
/// `crate::http::MAX_SOURCE_BYTES` is refused before anything is uploaded.
#[tokio::test]
async fn a_source_over_the_size_cap_is_refused_before_the_upload() {
    let declared = usize::try_from(crate::http::MAX_SOURCE_BYTES + 1).unwrap();
    let url = source(declared, Vec::new()).await;
    let (base, mut received) = proxy().await;
    let e = copy_to_proxy(&base, &url).await.unwrap_err();
    assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "more than the {} copied at most",
            crate::http::MAX_SOURCE_BYTES
        )),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(received.try_recv().is_err(), "nothing reached the proxy");
}

#[test]
fn a_logged_model_name_holds_none_of_the_characters_mlflow_refuses() {
    use super::logged_model::logged_model_name;
    assert_eq!(
        logged_model_name(r#"cxone it's "odd" \ %_/a:b.c"#),
        r#"cxone it_s _odd_ \ __/a_b_c"#.replace('/', "_")
    );
    assert_eq!(logged_model_name("billing-support"), "billing-support");
    assert_eq!(logged_model_name("..."), "___");
    assert_eq!(logged_model_name(""), "model");
    assert_eq!(logged_model_name(&"x".repeat(600)).chars().count(), 250);
}
