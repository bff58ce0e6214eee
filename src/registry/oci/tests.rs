use reqwest::StatusCode;

use crate::http::MAX_DETAIL_CHARS;
use crate::registry::{AUDIT_FILE, EVALUATION_FILE, PICTURE_FILE};

use super::auth::*;
use super::manifest::*;
use super::reference::*;
use super::session::*;
use super::*;

fn provenance() -> Provenance {
    Provenance {
        namespace: "team-a".into(),
        name: "billing".into(),
        uid: "0d6f-uid".into(),
        generation: 3,
        run: 2,
        cxone_job_id: "job-42".into(),
        skill_id: "skill-abc".into(),
        dataset_digest: format!("sha256:{}", "ab".repeat(32)),
        created: "2025-06-01T12:00:00Z".parse().unwrap(),
        source: "kubernetes://team-a/skilltrainingjobs/billing".into(),
        params: BTreeMap::new(),
    }
}

fn metrics() -> BTreeMap<String, f64> {
    [
        ("accuracy".to_string(), 0.8333333333333334),
        ("macro_f1".to_string(), 1.0),
        ("bad value".to_string(), 0.5),
        ("nan".to_string(), f64::NAN),
    ]
    .into_iter()
    .collect()
}

fn layers() -> (Descriptor, Descriptor) {
    let w = Descriptor {
        media_type: WEIGHT_MEDIA_TYPE.into(),
        ..Descriptor::of("x", b"weights")
    }
    .annotated(FILEPATH_ANNOTATION, WEIGHTS_FILE);
    let c = Descriptor {
        media_type: WEIGHT_CONFIG_MEDIA_TYPE.into(),
        ..Descriptor::of("x", b"config")
    }
    .annotated(FILEPATH_ANNOTATION, CONFIG_FILE);
    (w, c)
}

fn built() -> (Manifest, Vec<u8>) {
    let (w, c) = layers();
    let cfg = model_config_json(&provenance(), None, &[w.clone(), c.clone()]);
    let m = model_manifest(&provenance(), &metrics(), vec![w, c], &cfg);
    let bytes = manifest_bytes(&m);
    (m, bytes)
}

#[test]
fn valid_references_parse() {
    let t = OciTarget::parse("registry.example.com:5000/cxone/billing-support", false).unwrap();
    assert_eq!(t.registry, "registry.example.com:5000");
    assert_eq!(t.repository, "cxone/billing-support");
    assert!(!t.plain_http);
    for ok in [
        "127.0.0.1:5000/a",
        "localhost/a/b/c",
        "[::1]:5000/x",
        "r.io/a.b/c_d/e__f/g---h/0",
    ] {
        assert!(OciTarget::parse(ok, true).is_ok(), "{ok}");
    }
    assert_eq!(
        OciTarget::parse("h:1/x", true)
            .unwrap()
            .base_url()
            .unwrap()
            .as_str(),
        "http://h:1/"
    );
    assert_eq!(
        OciTarget::parse("h/x", false)
            .unwrap()
            .base_url()
            .unwrap()
            .as_str(),
        "https://h/"
    );
}

#[test]
fn hostile_references_are_refused_with_the_reason() {
    for (bad, why) in [
        ("", "empty"),
        ("registry.example.com", "no repository path"),
        ("registry.example.com/", "no repository path"),
        ("registry.example.com/cxone/skill:v1", "tag"),
        ("registry.example.com/cxone/skill@sha256:abc", "digest"),
        ("user:pw@registry.example.com/x", "credentials"),
        ("https://registry.example.com/x", "scheme"),
        ("registry.example.com/Cxone/skill", "lowercase"),
        ("Registry.example.com/x", "lowercase"),
        ("registry.example.com/a//b", "empty path component"),
        ("registry.example.com/a/", "empty path component"),
        ("registry.example.com/-a", "start and end"),
        ("registry.example.com/a..b", "separator"),
        ("registry.example.com/a/../b", "start and end"),
        ("registry.example.com/a b", "spaces"),
        ("registry.example.com/a\nb", "control"),
        ("registry.example.com/a%2fb", "contains '%'"),
        ("registry.example.com:0/a", "port"),
        ("registry.example.com:99999/a", "port"),
        ("registry.example.com:x/a", "port"),
        ("reg_istry/a", "host name"),
        ("[::1/a", "unclosed"),
        ("[zz]:5/a", "IPv6"),
        (":5000/a", "empty registry host"),
        ("/a", "no registry host"),
    ] {
        let err = OciTarget::parse(bad, false).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let long = format!("r.io/{}", "a".repeat(300));
    assert!(
        OciTarget::parse(&long, false)
            .unwrap_err()
            .contains("longer")
    );
    // Refusals quote at most a short prefix of what was given.
    let err = OciTarget::parse(&format!("r.io/{}:tag", "b".repeat(200)), false).unwrap_err();
    assert!(err.len() < 400, "{err}");
}

#[test]
fn tags_and_digests_are_checked() {
    assert!(check_tag("approved").is_ok());
    assert!(check_tag("run-2_v1.0").is_ok());
    for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
        assert!(check_tag(bad).is_err(), "{bad}");
    }
    assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
    assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
    assert!(!is_sha256_digest("sha256:abc"));
    assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(32))));
}

#[test]
fn the_model_manifest_is_modelpack_and_deterministic() {
    let (m, bytes) = built();
    let (_, again) = built();
    assert_eq!(bytes, again, "same inputs, same bytes");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(v["artifactType"], MODEL_ARTIFACT_TYPE);
    assert_eq!(v["config"]["mediaType"], MODEL_CONFIG_MEDIA_TYPE);
    assert_eq!(v["layers"][0]["mediaType"], WEIGHT_MEDIA_TYPE);
    assert_eq!(
        v["layers"][0]["annotations"][FILEPATH_ANNOTATION],
        WEIGHTS_FILE
    );
    assert_eq!(v["layers"][1]["mediaType"], WEIGHT_CONFIG_MEDIA_TYPE);
    assert_eq!(
        v["layers"][1]["annotations"][FILEPATH_ANNOTATION],
        CONFIG_FILE
    );
    assert!(v.get("subject").is_none());
    let a = &v["annotations"];
    assert_eq!(a[CREATED_ANNOTATION], "2025-06-01T12:00:00Z");
    assert_eq!(
        a[SOURCE_ANNOTATION],
        "kubernetes://team-a/skilltrainingjobs/billing"
    );
    assert_eq!(a[TITLE_ANNOTATION], "billing");
    assert_eq!(a["io.cxone.ai.namespace"], "team-a");
    assert_eq!(a["io.cxone.ai.generation"], "3");
    assert_eq!(a["io.cxone.ai.run"], "2");
    assert_eq!(a["io.cxone.ai.job-id"], "job-42");
    assert_eq!(a["io.cxone.ai.skill-id"], "skill-abc");
    assert_eq!(a["io.cxone.ai.uid"], "0d6f-uid");
    assert_eq!(
        a["io.cxone.ai.dataset-digest"],
        format!("sha256:{}", "ab".repeat(32))
    );
    assert_eq!(a["io.cxone.ai.metrics.accuracy"], "0.8333333333333334");
    assert_eq!(a["io.cxone.ai.metrics.macro_f1"], "1");
    // Metrics that cannot be annotations are left out.
    assert!(a.get("io.cxone.ai.metrics.nan").is_none());
    assert!(a.get("io.cxone.ai.metrics.bad value").is_none());
    // The config blob: ModelPack descriptor/config/modelfs with the layers' digests.
    let (w, c) = layers();
    let cfg: serde_json::Value = serde_json::from_slice(&model_config_json(
        &provenance(),
        None,
        &[w.clone(), c.clone()],
    ))
    .unwrap();
    assert_eq!(cfg["modelfs"]["type"], "layers");
    assert_eq!(
        cfg["modelfs"]["diffIds"],
        serde_json::json!([w.digest, c.digest])
    );
    assert_eq!(cfg["descriptor"]["createdAt"], "2025-06-01T12:00:00Z");
    assert_eq!(cfg["descriptor"]["name"], "billing");
    assert_eq!(
        m.config.digest,
        sha256_hex(&model_config_json(&provenance(), None, &[w, c]))
    );
    // Another metric value gives another manifest.
    let mut other = metrics();
    other.insert("accuracy".into(), 0.9);
    let (w, c) = layers();
    let cfg = model_config_json(&provenance(), None, &[w.clone(), c.clone()]);
    assert_ne!(
        manifest_bytes(&model_manifest(&provenance(), &other, vec![w, c], &cfg)),
        bytes
    );
}

#[test]
fn the_referrer_points_at_the_model() {
    let (_, model) = built();
    let subject = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &model);
    let docs = Documents {
        evaluation_json: b"{\"accuracy\":1}".to_vec(),
        audit_json: b"{}".to_vec(),
        picture_svg: b"<svg/>".to_vec(),
        ..Documents::default()
    };
    let r = referrer_manifest(&provenance(), &docs, subject.clone());
    let bytes = manifest_bytes(&r);
    assert_eq!(
        bytes,
        manifest_bytes(&referrer_manifest(&provenance(), &docs, subject.clone()))
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["artifactType"], EVALUATION_ARTIFACT_TYPE);
    assert_eq!(v["config"]["mediaType"], EMPTY_MEDIA_TYPE);
    assert_eq!(
        v["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(v["config"]["size"], 2);
    assert_eq!(v["subject"]["digest"], subject.digest);
    let titles: Vec<&str> = r
        .layers
        .iter()
        .map(|l| l.annotations[TITLE_ANNOTATION].as_str())
        .collect();
    assert_eq!(titles, [EVALUATION_FILE, AUDIT_FILE, PICTURE_FILE]);
    assert_eq!(r.layers[2].media_type, "image/svg+xml");
    assert_eq!(r.layers[0].size, 14);
}

#[test]
fn annotations_round_trip_into_a_champion() {
    let (m, bytes) = built();
    let target = OciTarget::parse("r.io/cxone/billing", false).unwrap();
    let digest = sha256_hex(&bytes);
    let parsed: Manifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed, m);
    let champion = champion_from_manifest(&target, &digest, &parsed).unwrap();
    assert_eq!(champion.reference, format!("r.io/cxone/billing@{digest}"));
    let expected: BTreeMap<String, f64> = [
        ("accuracy".to_string(), 0.8333333333333334),
        ("macro_f1".to_string(), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(champion.metrics, expected);

    // Unparsable metric annotations are ignored; a non-model artifact is refused.
    let mut odd = parsed.clone();
    odd.annotations.insert(
        format!("{METRIC_ANNOTATION_PREFIX}x"),
        "not a number".into(),
    );
    odd.annotations
        .insert(format!("{METRIC_ANNOTATION_PREFIX}y"), "inf".into());
    assert_eq!(
        champion_from_manifest(&target, &digest, &odd)
            .unwrap()
            .metrics,
        expected
    );
    odd.artifact_type = Some("application/vnd.other".into());
    assert!(matches!(
        champion_from_manifest(&target, &digest, &odd),
        Err(RegistryError::Rejected(_))
    ));
}

#[test]
fn the_fallback_index_is_merged_without_duplicates() {
    let a = Descriptor {
        artifact_type: Some(EVALUATION_ARTIFACT_TYPE.into()),
        ..Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, b"a")
    };
    let b = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, b"b");
    let first = merge_fallback_index(None, &a).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX_MEDIA_TYPE);
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["artifactType"], EVALUATION_ARTIFACT_TYPE);
    // Already listed: nothing to write.
    assert_eq!(merge_fallback_index(Some(&first), &a).unwrap(), None);
    // Another tool's entry (with fields we do not model) is kept, ours appended.
    let foreign = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": b.digest, "size": 1,
                       "platform": {"os": "linux"}}],
        "annotations": {"k": "v"}
    });
    let merged = merge_fallback_index(Some(&serde_json::to_vec(&foreign).unwrap()), &a)
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&merged).unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["platform"]["os"], "linux");
    assert_eq!(list[1]["digest"], a.digest);
    assert_eq!(v["annotations"]["k"], "v");
    // Not an index, or not JSON: refused.
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST_MEDIA_TYPE});
    assert!(merge_fallback_index(Some(&serde_json::to_vec(&manifest).unwrap()), &a).is_err());
    assert!(merge_fallback_index(Some(b"[1]"), &a).is_err());
    assert!(merge_fallback_index(Some(b"\xff"), &a).is_err());
    assert!(
        merge_fallback_index(Some(br#"{"manifests": 3}"#), &a)
            .unwrap_err()
            .contains("not a list")
    );
    assert_eq!(fallback_tag("sha256:abcd"), "sha256-abcd");
}

#[test]
fn challenges_parse() {
    assert_eq!(
        parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
        ),
        Some(Challenge::Bearer {
            realm: "https://auth.example/token".into(),
            service: Some("registry.example".into())
        })
    );
    assert_eq!(
        parse_challenge(r#"bearer realm = "https://a/\"t\"" , service=plain"#),
        Some(Challenge::Bearer {
            realm: "https://a/\"t\"".into(),
            service: Some("plain".into())
        })
    );
    assert_eq!(
        parse_challenge(r#"Basic realm="Registry Realm""#),
        Some(Challenge::Basic)
    );
    assert_eq!(parse_challenge("Negotiate abc"), None);
    assert_eq!(parse_challenge("Bearer service=x"), None);
    assert_eq!(parse_challenge(""), None);
    // Hostile values do not panic.
    for s in [
        "Bearer =",
        "Bearer realm=\"",
        "Bearer ,,,",
        "Bearer realm=\"\\",
    ] {
        let _ = parse_challenge(s);
    }
}

#[test]
fn registry_errors_are_classified_and_clipped() {
    let body = br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"x":1}}]}"#;
    assert_eq!(detail_of(body), "MANIFEST_INVALID: manifest invalid");
    assert_eq!(detail_of(b"plain\ntext"), "plain text");
    assert!(detail_of(&[b'x'; 10_000]).chars().count() <= MAX_DETAIL_CHARS + 1);
    let e = |s: u16| classify(StatusCode::from_u16(s).unwrap(), "w", "d");
    assert!(matches!(e(401), RegistryError::Auth(_)));
    assert!(matches!(e(403), RegistryError::Auth(_)));
    assert!(matches!(e(429), RegistryError::Unreachable(_)));
    assert!(matches!(e(503), RegistryError::Unreachable(_)));
    assert!(matches!(e(400), RegistryError::Rejected(_)));
    assert!(matches!(e(404), RegistryError::Rejected(_)));
    assert!(matches!(e(302), RegistryError::Rejected(_)));
    assert_eq!(
        e(400).to_string(),
        "the registry rejected the request: w: HTTP 400 Bad Request: d"
    );
}

#[test]
fn locations_resolve_against_the_registry_and_never_downgrade() {
    let registry = OciRegistry::new().unwrap();
    let answer = |location: &str| {
        reqwest::Response::from(
            axum::http::Response::builder()
                .status(202)
                .header("Location", location)
                .body(Vec::<u8>::new())
                .unwrap(),
        )
    };
    let plain = OciTarget::parse("127.0.0.1:5000/cxone/x", true).unwrap();
    let s = Session::new(&registry, &plain, &RegistryAuth::Anonymous, "pull").unwrap();
    let url = s
        .location(&answer("/v2/cxone/x/blobs/uploads/u1?_state=abc"), "w")
        .unwrap();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:5000/v2/cxone/x/blobs/uploads/u1?_state=abc"
    );
    assert!(s.same_origin(&url));
    let elsewhere = s
        .location(&answer("http://storage.example/upload/1"), "w")
        .unwrap();
    assert!(
        !s.same_origin(&elsewhere),
        "no credentials for another host"
    );

    let tls = OciTarget::parse("registry.example.com/cxone/x", false).unwrap();
    let s = Session::new(&registry, &tls, &RegistryAuth::Anonymous, "pull").unwrap();
    assert_eq!(
        s.location(&answer("uploads/u2"), "w").unwrap().as_str(),
        "https://registry.example.com/uploads/u2"
    );
    let err = s
        .location(
            &answer("http://registry.example.com/v2/x?_state=secret"),
            "w",
        )
        .unwrap_err();
    assert!(err.to_string().contains("not HTTPS"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let missing = reqwest::Response::from(
        axum::http::Response::builder()
            .status(202)
            .body(Vec::<u8>::new())
            .unwrap(),
    );
    assert!(matches!(
        s.location(&missing, "w"),
        Err(RegistryError::Rejected(_))
    ));
}

#[test]
fn credentials_are_sensitive_headers() {
    let h = basic_header("ci", "hunter2").unwrap();
    assert!(h.is_sensitive());
    assert!(!format!("{h:?}").contains("hunter2"));
    assert!(bearer_header("tok\n").is_err());
}

/// The expired-source rule on the OCI path, which changed: a 401 from the signed URL (it
/// carries no credentials of ours, so the signature was refused) is a spent URL to export
/// again, as a 403 was already; the upload started for it is abandoned.
#[tokio::test]
async fn a_signed_url_answering_401_is_an_expired_source() {
    use crate::http::loopback::serve;
    let registry_url = serve(
        b"HTTP/1.1 202 Accepted\r\nlocation: /v2/cxone/x/blobs/uploads/1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_vec(),
        2,
    )
    .await;
    let source = serve(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        1,
    )
    .await;
    let registry = OciRegistry::new().unwrap();
    let host = registry_url.trim_start_matches("http://");
    let target = OciTarget::parse(&format!("{host}/cxone/x"), true).unwrap();
    let mut s = Session::new(&registry, &target, &RegistryAuth::Anonymous, "pull,push").unwrap();
    let e = s
        .copy_from_source(
            &format!("{source}/w.json?signature=s3cr3t"),
            "pushing w.json",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::SourceExpired(_)), "{e:?}");
    assert!(e.retryable());
    let text = e.to_string();
    assert!(text.contains("401") && !text.contains("s3cr3t"), "{text}");
}

#[test]
fn the_model_config_follows_the_modelpack_types_field_by_field() {
    let (w, c) = layers();
    let doc = doc_layer(b"# card\n");
    let cfg: serde_json::Value = serde_json::from_slice(&model_config_json(
        &provenance(),
        Some("de"),
        &[w.clone(), c.clone(), doc.clone()],
    ))
    .expect("JSON");
    let d = &cfg["descriptor"];
    for field in [
        "createdAt",
        "authors",
        "vendor",
        "family",
        "name",
        "version",
        "title",
        "description",
        "sourceURL",
        "revision",
    ] {
        assert!(!d[field].is_null(), "descriptor.{field} missing: {d}");
    }
    assert_eq!(d["version"], "run-2");
    assert!(
        d["authors"][0]
            .as_str()
            .expect("author")
            .contains("team-a/billing")
    );
    assert_eq!(cfg["config"]["format"], "json");
    assert_eq!(
        cfg["config"]["capabilities"],
        serde_json::json!({"inputTypes": ["text"], "outputTypes": ["text"], "languages": ["de"]})
    );
    assert_eq!(
        cfg["modelfs"],
        serde_json::json!({"type": "layers", "diffIds": [w.digest, c.digest, doc.digest]})
    );
    // Nothing but the ModelPack fields at the top.
    let keys: Vec<&String> = cfg.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["config", "descriptor", "modelfs"]);
    // Without a known language there is no languages list (not an empty one).
    let cfg: serde_json::Value =
        serde_json::from_slice(&model_config_json(&provenance(), None, &[w, c])).expect("JSON");
    assert!(cfg["config"]["capabilities"].get("languages").is_none());
}

#[test]
fn the_card_is_a_modelpack_doc_layer_named_readme() {
    let card = b"# card\n";
    let layer = doc_layer(card);
    assert_eq!(layer.media_type, DOC_MEDIA_TYPE);
    assert_eq!(layer.digest, sha256_hex(card));
    assert_eq!(layer.size, card.len() as u64);
    assert_eq!(layer.annotations[FILEPATH_ANNOTATION], "README.md");
    assert_eq!(layer.annotations[TITLE_ANNOTATION], "README.md");
    let (w, c) = layers();
    let cfg = model_config_json(
        &provenance(),
        Some("en"),
        &[w.clone(), c.clone(), layer.clone()],
    );
    let m = model_manifest(&provenance(), &metrics(), vec![w, c, layer.clone()], &cfg);
    assert_eq!(m.layers.last(), Some(&layer));
}

#[test]
fn the_signature_referrer_names_the_model_as_its_subject() {
    let subject = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, b"{\"model\":1}");
    let m = signature_manifest(&provenance(), b"{\"bundle\":1}", subject.clone());
    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.dev.sigstore.bundle.v0.3+json")
    );
    assert_eq!(m.subject, Some(subject));
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.layers[0].annotations[TITLE_ANNOTATION], "model.sig");
    assert_eq!(m.config.media_type, EMPTY_MEDIA_TYPE);
}
