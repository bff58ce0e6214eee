use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::*;

const SEC1: &str = include_str!("../../../tests/data/signing/test-key-sec1.pem");
const PKCS8: &str = include_str!("../../../tests/data/signing/test-key-pkcs8.pem");
const PUBLIC: &str = include_str!("../../../tests/data/signing/test-key.pub.pem");
const P384: &str = include_str!("../../../tests/data/signing/test-key-p384.pem");

fn files() -> Vec<SignedFile> {
    vec![
        SignedFile {
            path: "model-weights.json".into(),
            sha256: hex::encode(Sha256::digest(b"weights")),
        },
        SignedFile {
            path: "README.md".into(),
            sha256: hex::encode(Sha256::digest(b"# card")),
        },
        SignedFile {
            path: "model-config.json".into(),
            sha256: hex::encode(Sha256::digest(b"config")),
        },
    ]
}

fn decode(b64: &Value) -> Vec<u8> {
    STANDARD
        .decode(b64.as_str().expect("a base64 string"))
        .expect("valid base64")
}

#[test]
fn both_pem_forms_read_the_same_key_and_its_public_half_is_what_openssl_prints() {
    let a = ModelSigningKey::from_pem(SEC1).expect("SEC 1 key");
    let b = ModelSigningKey::from_pem(PKCS8).expect("PKCS #8 key");
    assert_eq!(a.public_key_pem(), PUBLIC);
    assert_eq!(b.public_key_pem(), PUBLIC);
    assert_eq!(
        a.fingerprint(),
        hex::encode(Sha256::digest(PUBLIC.as_bytes()))
    );
    assert_eq!(
        format!("{a:?}"),
        format!("ModelSigningKey(sha256:{})", a.fingerprint())
    );
}

#[test]
fn keys_that_cannot_sign_say_why_without_showing_the_key() {
    assert_eq!(
        ModelSigningKey::from_pem("hello").unwrap_err(),
        KeyError::NoPrivateKey
    );
    assert_eq!(
        ModelSigningKey::from_pem(PUBLIC).unwrap_err(),
        KeyError::NoPrivateKey
    );
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(
        ModelSigningKey::from_pem(encrypted).unwrap_err(),
        KeyError::Encrypted
    );
    let err = ModelSigningKey::from_pem(P384).unwrap_err();
    assert_eq!(err, KeyError::NotP256("EC PRIVATE KEY"));
    let garbled = SEC1.replace("M", "N");
    let err = ModelSigningKey::from_pem(&garbled).unwrap_err().to_string();
    assert!(!err.contains("MHc") && !err.contains("NHc"), "{err}");
}

#[test]
fn the_statement_lists_every_file_sorted_and_binds_them_in_its_root_digest() {
    let s = statement("billing", &files());
    assert_eq!(s["_type"], STATEMENT_TYPE);
    assert_eq!(s["predicateType"], PREDICATE_TYPE);
    let names: Vec<&str> = s["predicate"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["README.md", "model-config.json", "model-weights.json"]
    );
    let mut root = Sha256::new();
    for name in names {
        let f = files().into_iter().find(|f| f.path == name).expect("file");
        root.update(hex::decode(f.sha256).expect("hex"));
    }
    assert_eq!(
        s["subject"][0]["digest"]["sha256"],
        hex::encode(root.finalize())
    );
    assert_eq!(s["subject"][0]["name"], "billing");
    assert_eq!(s["predicate"]["serialization"]["method"], "files");
}

#[test]
fn paths_sort_by_component_not_by_string() {
    let f = |p: &str| SignedFile {
        path: p.into(),
        sha256: hex::encode(Sha256::digest(p.as_bytes())),
    };
    let s = statement("m", &[f("a.b"), f("a/b"), f("a-b")]);
    let names: Vec<&str> = s["predicate"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    // As path components: "a" < "a-b" < "a.b"; as strings "a-b" < "a.b" < "a/b".
    assert_eq!(names, ["a/b", "a-b", "a.b"]);
}

#[test]
fn the_bundle_verifies_with_the_public_key_over_the_dsse_encoding_and_is_deterministic() {
    let key = ModelSigningKey::from_pem(SEC1).expect("key");
    let bundle = sign(&key, "billing", &files());
    assert_eq!(
        bundle,
        sign(&key, "billing", &files()),
        "RFC 6979: same bytes"
    );
    let b: Value = serde_json::from_slice(&bundle).expect("JSON");
    assert_eq!(b["mediaType"], BUNDLE_MEDIA_TYPE);
    assert_eq!(
        b["verificationMaterial"]["publicKey"]["hint"],
        key.fingerprint()
    );
    let env = &b["dsseEnvelope"];
    assert_eq!(env["payloadType"], PAYLOAD_TYPE);
    let payload = decode(&env["payload"]);
    let statement_back: Value = serde_json::from_slice(&payload).expect("statement");
    assert_eq!(statement_back, statement("billing", &files()));
    let der = decode(&env["signatures"][0]["sig"]);
    let sig = Signature::from_der(&der).expect("a DER signature");
    let verifier = VerifyingKey::from_public_key_pem(PUBLIC).expect("public key");
    let mut expected_pae = format!("DSSEv1 28 {PAYLOAD_TYPE} {} ", payload.len()).into_bytes();
    expected_pae.extend_from_slice(&payload);
    verifier
        .verify(&expected_pae, &sig)
        .expect("the signature verifies");
    let mut tampered = files();
    tampered[0].sha256 = hex::encode(Sha256::digest(b"other weights"));
    let other: Value = serde_json::from_slice(&sign(&key, "billing", &tampered)).expect("JSON");
    assert_ne!(other["dsseEnvelope"]["signatures"], env["signatures"]);
}
