//! `registry::oci` against real servers on 127.0.0.1: the CXone simulator serving a completed
//! job's signed artifact URLs, the distribution registry (`docker-registry`, anonymous or behind
//! htpasswd) receiving the push, and `oras` reading it back as an independent client. Tools come
//! from `hack/oci-tools.sh`.

mod support {
    pub mod oci_registry;
    pub mod trained;
}

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cxone_skill_operator::registry::oci::{
    EVALUATION_ARTIFACT_TYPE, MODEL_ARTIFACT_TYPE, OciPushed, OciRegistry, OciTarget,
};
use cxone_skill_operator::registry::{Documents, ModelSource, RegistryAuth, RegistryError};
use cxone_skill_operator::simulator::{SimulatorConfig, SimulatorHandle, spawn};
use cxone_skill_operator::testkit::provenance;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::oci_registry::{TestRegistry, free_port};
use support::trained::{disjoint_intents_payload, train_and_export};

/// Longest any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(20);
/// Several upload chunks and a partial last one.
const MULTI_MIB: u64 = 9 * 1024 * 1024 + 12_345;

/// A completed simulator job and its export.
struct Exported {
    _sim: SimulatorHandle,
    job_id: String,
    source: ModelSource,
}

/// Starts a simulator, trains a job to completion and exports its artifacts.
async fn exported_job(config: SimulatorConfig) -> Exported {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = spawn(config, listener).await.unwrap();
    let (job_id, source) = train_and_export(
        &sim.base_url(),
        "test-client",
        "test-secret",
        &disjoint_intents_payload(),
    )
    .await;
    Exported {
        _sim: sim,
        job_id,
        source,
    }
}

fn sim_config(weights_bytes: Option<u64>) -> SimulatorConfig {
    SimulatorConfig {
        job_duration: Duration::from_millis(50),
        artifact_weights_bytes: weights_bytes,
        ..SimulatorConfig::default()
    }
}

fn metrics() -> BTreeMap<String, f64> {
    [
        ("accuracy", 0.9166666666666666),
        ("macro_f1", 0.9),
        ("weighted_recall", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn documents() -> Documents {
    Documents {
        evaluation_json: br#"{"accuracy":0.9166666666666666}"#.to_vec(),
        audit_json: br#"{"decision":"promote"}"#.to_vec(),
        picture_svg: b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
        ..Documents::default()
    }
}

async fn push(
    registry: &OciRegistry,
    target: &OciTarget,
    auth: &RegistryAuth,
    tag: &str,
    job: &Exported,
) -> Result<OciPushed, RegistryError> {
    registry
        .push(
            target,
            auth,
            tag,
            &job.source,
            &provenance(&job.job_id),
            &metrics(),
            &documents(),
        )
        .await
}

/// sha256 of what a signed URL serves, read the way a third party would.
async fn sha256_of_url(url: &str) -> String {
    let mut resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut hash = Sha256::new();
    while let Some(piece) = resp.chunk().await.unwrap() {
        hash.update(&piece);
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The referrers `oras discover` lists for `reference` (its JSON, flattened to one level).
fn discovered(registry: &TestRegistry, reference: &str) -> Vec<Value> {
    let out = registry.oras(&["discover", "--format", "json", reference]);
    let v = json_of(&out);
    v.get("referrers")
        .or_else(|| v.get("manifests"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The signature parameter of a signed URL.
fn signature_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == "signature")
        .map(|(_, v)| v.into_owned())
        .expect("a signed URL")
}

#[tokio::test]
async fn an_anonymous_push_is_a_modelpack_artifact_that_oras_reads_back() {
    let job = exported_job(sim_config(Some(MULTI_MIB))).await;
    let registry = TestRegistry::start().await;
    let target = registry.target("cxone/billing-support");
    let client = OciRegistry::new().unwrap();
    let pushed = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap();
    assert_eq!(pushed.weights_bytes, MULTI_MIB);
    assert_eq!(
        pushed.reference,
        registry.reference(&format!("cxone/billing-support@{}", pushed.manifest_digest))
    );
    // The distribution registry 2.8 has no referrers API: the tag fallback was used.
    assert!(!pushed.referrers_api);

    // The manifest, as oras sees it.
    let out = registry.oras(&[
        "manifest",
        "fetch",
        &registry.reference("cxone/billing-support:run-2"),
    ]);
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout))),
        pushed.manifest_digest
    );
    let m = json_of(&out);
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], MODEL_ARTIFACT_TYPE);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        layers[0]["annotations"]["org.cncf.model.filepath"],
        "model-weights.json"
    );
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "model-weights.json"
    );
    assert_eq!(layers[0]["size"], MULTI_MIB);
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.cncf.model.weight.config.v1.raw"
    );
    assert_eq!(
        layers[1]["annotations"]["org.cncf.model.filepath"],
        "model-config.json"
    );
    let a = &m["annotations"];
    assert_eq!(
        a["org.opencontainers.image.created"],
        "2025-06-01T12:00:00Z"
    );
    assert_eq!(
        a["org.opencontainers.image.source"],
        "kubernetes://team-a/skilltrainingjobs/billing-support"
    );
    assert_eq!(a["org.opencontainers.image.title"], "billing-support");
    assert_eq!(a["io.cxone.ai.namespace"], "team-a");
    assert_eq!(a["io.cxone.ai.name"], "billing-support");
    assert_eq!(a["io.cxone.ai.uid"], "6b1f0c2e-uid");
    assert_eq!(a["io.cxone.ai.generation"], "4");
    assert_eq!(a["io.cxone.ai.run"], "2");
    assert_eq!(a["io.cxone.ai.job-id"], job.job_id.as_str());
    assert_eq!(a["io.cxone.ai.skill-id"], "skill-abc-123");
    assert_eq!(
        a["io.cxone.ai.dataset-digest"],
        format!("sha256:{}", "cd".repeat(32))
    );
    assert_eq!(a["io.cxone.ai.metrics.accuracy"], "0.9166666666666666");
    assert_eq!(a["io.cxone.ai.metrics.weighted_recall"], "1");

    // The layers are byte for byte what the simulator serves.
    let weights_digest = sha256_of_url(&job.source.weights_url).await;
    let config_digest = sha256_of_url(&job.source.config_url).await;
    assert_eq!(layers[0]["digest"], weights_digest.as_str());
    assert_eq!(layers[1]["digest"], config_digest.as_str());
    for digest in [&weights_digest, &config_digest] {
        let out = registry.oras(&[
            "blob",
            "fetch",
            "--output",
            "-",
            &registry.reference(&format!("cxone/billing-support@{digest}")),
        ]);
        assert_eq!(
            &format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout))),
            digest
        );
    }
    // The ModelPack config lists the layers' digests.
    let config_digest_in_manifest = m["config"]["digest"].as_str().unwrap();
    let out = registry.oras(&[
        "blob",
        "fetch",
        "--output",
        "-",
        &registry.reference(&format!(
            "cxone/billing-support@{config_digest_in_manifest}"
        )),
    ]);
    let model_config = json_of(&out);
    assert_eq!(model_config["modelfs"]["type"], "layers");
    assert_eq!(
        model_config["modelfs"]["diffIds"],
        json!([weights_digest, config_digest])
    );

    // oras pull writes the files under their names.
    let pull_dir = registry.dir().join("pulled");
    registry.oras(&[
        "pull",
        "--output",
        pull_dir.to_str().unwrap(),
        &registry.reference("cxone/billing-support:run-2"),
    ]);
    let pulled = std::fs::read(pull_dir.join("model-config.json")).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&pulled))),
        config_digest
    );
    assert_eq!(
        std::fs::metadata(pull_dir.join("model-weights.json"))
            .unwrap()
            .len(),
        MULTI_MIB
    );

    // The referrer: found by oras discover through the tag fallback.
    let model_ref =
        registry.reference(&format!("cxone/billing-support@{}", pushed.manifest_digest));
    let referrers = discovered(&registry, &model_ref);
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    assert_eq!(referrers[0]["digest"], pushed.referrer_digest.as_str());
    assert_eq!(referrers[0]["artifactType"], EVALUATION_ARTIFACT_TYPE);
    let out = registry.oras(&[
        "manifest",
        "fetch",
        &registry.reference(&format!("cxone/billing-support@{}", pushed.referrer_digest)),
    ]);
    let r = json_of(&out);
    assert_eq!(r["subject"]["digest"], pushed.manifest_digest.as_str());
    assert_eq!(
        r["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let titles: Vec<&str> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(titles, ["evaluation.json", "audit.json", "evaluation.svg"]);
    let svg = &r["layers"][2];
    assert_eq!(svg["mediaType"], "image/svg+xml");
    let out = registry.oras(&[
        "blob",
        "fetch",
        "--output",
        "-",
        &registry.reference(&format!(
            "cxone/billing-support@{}",
            svg["digest"].as_str().unwrap()
        )),
    ]);
    assert_eq!(out.stdout, documents().picture_svg);
}

#[tokio::test]
async fn a_repeated_push_gives_the_same_digests_and_one_referrer() {
    let job = exported_job(sim_config(Some(256 * 1024))).await;
    let registry = TestRegistry::start().await;
    let target = registry.target("cxone/repeat");
    let client = OciRegistry::new().unwrap();
    let first = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap();
    let again = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap();
    assert_eq!(first, again);
    let model_ref = registry.reference(&format!("cxone/repeat@{}", first.manifest_digest));
    let referrers = discovered(&registry, &model_ref);
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    // The fallback index itself lists it once.
    let fallback = first.manifest_digest.replace(':', "-");
    let out = registry.oras(&[
        "manifest",
        "fetch",
        &registry.reference(&format!("cxone/repeat:{fallback}")),
    ]);
    let index = json_of(&out);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_push_with_the_right_password_works_and_a_wrong_one_is_an_auth_error() {
    let job = exported_job(sim_config(Some(1024 * 1024))).await;
    let registry = TestRegistry::start_with_htpasswd("ci-pusher", "s3cret-Pa55").await;
    let target = registry.target("cxone/private");
    let client = OciRegistry::new().unwrap();

    let pushed = push(&client, &target, &registry.auth(), "run-2", &job)
        .await
        .unwrap();
    let out = registry.oras(&[
        "manifest",
        "fetch",
        "--descriptor",
        &registry.reference("cxone/private:run-2"),
    ]);
    assert_eq!(json_of(&out)["digest"], pushed.manifest_digest.as_str());

    let signature = signature_of(&job.source.weights_url);
    for auth in [
        RegistryAuth::Basic {
            username: "ci-pusher".into(),
            password: "wrong-Pa55word".into(),
        },
        RegistryAuth::Anonymous,
    ] {
        let err = push(&client, &target, &auth, "run-3", &job)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Auth(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        for secret in ["wrong-Pa55word", "s3cret-Pa55", signature.as_str()] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(!err.retryable());
    }
    // Reading the champion needs the credentials too.
    let err = client
        .champion(&target, &RegistryAuth::Anonymous, "run-2")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Auth(_)), "{err:?}");
    let champion = client
        .champion(&target, &registry.auth(), "run-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(champion.metrics, metrics());
}

#[tokio::test]
async fn promotion_tags_the_model_and_the_champion_carries_its_metrics() {
    let job = exported_job(sim_config(None)).await;
    let registry = TestRegistry::start().await;
    let target = registry.target("cxone/promote");
    let client = OciRegistry::new().unwrap();
    let auth = RegistryAuth::Anonymous;

    assert_eq!(client.champion(&target, &auth, "approved").await, Ok(None));
    let pushed = push(&client, &target, &auth, "run-2", &job).await.unwrap();
    // The simulator's own weights JSON (no --artifact-weights-bytes).
    let weights: Value = reqwest::get(&job.source.weights_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(weights["labels"].is_array());
    assert_eq!(client.champion(&target, &auth, "approved").await, Ok(None));

    client
        .tag(&target, &auth, &pushed.manifest_digest, "approved")
        .await
        .unwrap();
    let champion = client
        .champion(&target, &auth, "approved")
        .await
        .unwrap()
        .expect("a champion");
    assert_eq!(champion.reference, pushed.reference);
    assert_eq!(champion.metrics, metrics());
    let out = registry.oras(&[
        "manifest",
        "fetch",
        "--descriptor",
        &registry.reference("cxone/promote:approved"),
    ]);
    assert_eq!(json_of(&out)["digest"], pushed.manifest_digest.as_str());

    // A repository never pushed to has no champion either; tagging an unknown digest is refused.
    assert_eq!(
        client
            .champion(&registry.target("cxone/never"), &auth, "approved")
            .await,
        Ok(None)
    );
    let unknown = format!("sha256:{}", "0".repeat(64));
    let err = client
        .tag(&target, &auth, &unknown, "approved")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Rejected(_)), "{err:?}");
    let err = client
        .tag(&target, &auth, "latest", "approved")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn tampered_or_expired_signed_urls_are_source_expired() {
    let registry = TestRegistry::start().await;
    let target = registry.target("cxone/expired");
    let client = OciRegistry::new().unwrap();

    // A tampered signature.
    let mut job = exported_job(sim_config(Some(64 * 1024))).await;
    let signature = signature_of(&job.source.weights_url);
    let forged: String = signature
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    job.source.weights_url = job.source.weights_url.replace(&signature, &forged);
    let err = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SourceExpired(_)), "{err:?}");
    assert!(err.retryable());
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(&forged) && !text.contains(&signature),
        "{text}"
    );
    assert!(text.contains("403"), "{text}");

    // URLs that expired: wait until the simulator refuses them, then push.
    let job = exported_job(SimulatorConfig {
        artifact_ttl: Duration::from_millis(1),
        ..sim_config(Some(64 * 1024))
    })
    .await;
    let deadline = Instant::now() + DEADLINE;
    while reqwest::get(&job.source.config_url).await.unwrap().status() != 403 {
        assert!(Instant::now() < deadline, "the URL never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SourceExpired(_)), "{err:?}");
    assert!(
        !err.to_string()
            .contains(&signature_of(&job.source.weights_url))
    );
    // Nothing was tagged.
    assert_eq!(
        client
            .champion(&target, &RegistryAuth::Anonymous, "run-2")
            .await,
        Ok(None)
    );
}

#[tokio::test]
async fn a_registry_that_is_not_running_is_unreachable() {
    let job = exported_job(sim_config(Some(64 * 1024))).await;
    let target = OciTarget::parse(&format!("127.0.0.1:{}/cxone/x", free_port()), true).unwrap();
    let client = OciRegistry::new().unwrap();
    let err = push(&client, &target, &RegistryAuth::Anonymous, "run-2", &job)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable(_)), "{err:?}");
    assert!(err.retryable());
    assert!(
        !err.to_string()
            .contains(&signature_of(&job.source.weights_url))
    );
    let err = client
        .champion(&target, &RegistryAuth::Anonymous, "approved")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable(_)), "{err:?}");
}

/// A token-auth front end for a registry, as registries with a token service work: every
/// request needs `Authorization: Bearer <token>`, else 401 with a `Bearer realm=…` challenge; the
/// realm issues a token for HTTP Basic credentials; authorised requests are passed on to the
/// real registry behind it. Records the scopes asked for.
struct TokenGateway {
    addr: std::net::SocketAddr,
    scopes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _server: tokio::task::JoinHandle<()>,
}

const GATEWAY_TOKEN: &str = "gw-token-7f3a9c";

async fn token_gateway(upstream: String, user: &str, password: &str) -> TokenGateway {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use base64::Engine as _;

    #[derive(Clone)]
    struct Gw {
        upstream: String,
        basic: String,
        realm: String,
        scopes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        http: reqwest::Client,
    }
    async fn handle(State(gw): State<Gw>, req: Request) -> Response {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if req.uri().path() == "/token" {
            if auth != gw.basic {
                return (
                    StatusCode::UNAUTHORIZED,
                    "{\"details\":\"bad credentials\"}",
                )
                    .into_response();
            }
            let query = req.uri().query().unwrap_or("").to_string();
            let scope = reqwest::Url::parse(&format!("http://x/?{query}"))
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            gw.scopes.lock().unwrap().push(scope);
            return axum::Json(json!({"token": GATEWAY_TOKEN})).into_response();
        }
        if auth != format!("Bearer {GATEWAY_TOKEN}") {
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}",
            )
                .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"{}\",service=\"cxone-test\"",
                    gw.realm
                ))
                .unwrap(),
            );
            return resp;
        }
        // Pass the request on (the Host header is kept, so the registry's Location headers
        // name the gateway).
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
        let url = format!(
            "{}{}",
            gw.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut headers = parts.headers.clone();
        headers.remove(header::AUTHORIZATION);
        let upstream = gw
            .http
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let mut out = Response::builder().status(upstream.status().as_u16());
        for (k, v) in upstream.headers() {
            out = out.header(k, v);
        }
        out.body(Body::from(upstream.bytes().await.unwrap()))
            .unwrap()
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let gw = Gw {
        upstream,
        basic: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
        realm: format!("http://{addr}/token"),
        scopes: scopes.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let app = axum::Router::new().fallback(handle).with_state(gw);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TokenGateway {
        addr,
        scopes,
        _server: server,
    }
}

#[tokio::test]
async fn the_bearer_token_flow_gets_a_token_for_the_repository() {
    let job = exported_job(sim_config(Some(5 * 1024 * 1024))).await;
    let registry = TestRegistry::start().await;
    let gateway = token_gateway(format!("http://{}", registry.host()), "robot", "t0ken-Pa55").await;
    let target = OciTarget::parse(&format!("{}/cxone/tokens", gateway.addr), true).unwrap();
    let client = OciRegistry::new().unwrap();
    let creds = RegistryAuth::Basic {
        username: "robot".into(),
        password: "t0ken-Pa55".into(),
    };
    let pushed = push(&client, &target, &creds, "run-2", &job).await.unwrap();
    assert_eq!(
        gateway.scopes.lock().unwrap().first().map(String::as_str),
        Some("repository:cxone/tokens:pull,push")
    );
    // The registry behind the gateway has it.
    let out = registry.oras(&[
        "manifest",
        "fetch",
        "--descriptor",
        &registry.reference("cxone/tokens:run-2"),
    ]);
    assert_eq!(json_of(&out)["digest"], pushed.manifest_digest.as_str());
    client
        .tag(&target, &creds, &pushed.manifest_digest, "approved")
        .await
        .unwrap();
    let champion = client
        .champion(&target, &creds, "approved")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(champion.metrics, metrics());
    assert!(
        gateway
            .scopes
            .lock()
            .unwrap()
            .contains(&"repository:cxone/tokens:pull".to_string())
    );

    // Refused by the token service: Auth, without the password or the token service's secrets.
    let wrong = RegistryAuth::Basic {
        username: "robot".into(),
        password: "not-the-Pa55".into(),
    };
    let err = push(&client, &target, &wrong, "run-3", &job)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Auth(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("token"), "{text}");
    for secret in ["not-the-Pa55", "t0ken-Pa55", GATEWAY_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
}

/// A source that serves `/ok` (a small file), `/broken` (1 MiB, then the connection breaks,
/// short of its declared length) and `/error` (503).
async fn unreliable_source() -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::response::Response;
    use axum::routing::get;

    let app = axum::Router::new()
        .route("/ok", get(|| async { "{\"ok\":true}" }))
        .route(
            "/broken",
            get(|| async {
                let pieces = futures::stream::iter(vec![
                    Ok(bytes::Bytes::from(vec![7u8; 1024 * 1024])),
                    Err(std::io::Error::other("the source went away")),
                ]);
                Response::builder()
                    .header(header::CONTENT_LENGTH, 4 * 1024 * 1024)
                    .body(Body::from_stream(pieces))
                    .unwrap()
            }),
        )
        .route(
            "/error",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, server)
}

#[tokio::test]
async fn a_broken_or_failing_download_is_a_source_error_and_nothing_is_tagged() {
    let (base, _server) = unreliable_source().await;
    let registry = TestRegistry::start().await;
    let target = registry.target("cxone/broken");
    let client = OciRegistry::new().unwrap();
    for path in ["broken", "error"] {
        let source = ModelSource {
            weights_url: format!("{base}/{path}?signature=s3cr3t-sig"),
            config_url: format!("{base}/ok?signature=s3cr3t-sig"),
        };
        let err = client
            .push(
                &target,
                &RegistryAuth::Anonymous,
                "run-2",
                &source,
                &provenance("job-x"),
                &metrics(),
                &documents(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Source(_)), "{path}: {err:?}");
        assert!(err.retryable());
        assert!(!err.to_string().contains("s3cr3t-sig"), "{err}");
    }
    assert_eq!(
        client
            .champion(&target, &RegistryAuth::Anonymous, "run-2")
            .await,
        Ok(None)
    );
}
