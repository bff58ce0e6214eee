//! Model signatures (`src/registry/signing/`) checked by an independent verifier: the
//! `model-signing` package's `model_signing verify key` (pinned in hack/requirements-test.txt,
//! installed by hack/python-venv.sh). A signature over a model folder verifies; a changed byte, a
//! removed file, an added file and another key each fail. The registry end-to-end tests
//! (tests/registry_e2e.rs) run the same verifier on what the operator pushed.

mod support {
    pub mod model_signing;
}

use std::fs;
use std::path::{Path, PathBuf};

use cxone_skill_operator::registry::signing::{ModelSigningKey, SignedFile, sign};
use sha2::{Digest, Sha256};
use support::model_signing::{key_file, verify};

fn assert_verifies(public_key: &Path, signature: &Path, dir: &Path) {
    let out = verify(public_key, signature, dir);
    assert!(
        out.status.success(),
        "model_signing refused a good signature:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_refused(public_key: &Path, signature: &Path, dir: &Path, why: &str) {
    let out = verify(public_key, signature, dir);
    assert!(
        !out.status.success(),
        "model_signing accepted {why}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A model folder with weights, configuration and card, signed with the test key; the
/// signature is written to `signature`.
fn signed_model(root: &Path, signature: &Path) {
    fs::create_dir_all(root).expect("model folder");
    let files = [
        ("model-weights.json", "{\"weights\":[0.1,0.2,0.3]}"),
        ("model-config.json", "{\"labels\":[\"cancel\",\"billing\"]}"),
        ("README.md", "# skill-abc\n\nA model card.\n"),
    ];
    let mut signed = Vec::new();
    for (name, text) in files {
        fs::write(root.join(name), text).expect("write a model file");
        signed.push(SignedFile {
            path: name.to_string(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        });
    }
    let pem = fs::read_to_string(key_file("test-key-sec1.pem")).expect("the test key");
    let key = ModelSigningKey::from_pem(&pem).expect("a P-256 key");
    fs::write(signature, sign(&key, "skill-abc", &signed)).expect("write the signature");
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cxone-model-signing-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

#[test]
fn the_verifier_accepts_the_signature_and_refuses_every_change() {
    let root = scratch("changes");
    let model = root.join("model");
    let sig = root.join("model.sig");
    signed_model(&model, &sig);
    let public = key_file("test-key.pub.pem");
    assert_verifies(&public, &sig, &model);

    // A changed byte.
    let weights = model.join("model-weights.json");
    let original = fs::read(&weights).expect("read weights");
    let mut changed = original.clone();
    changed[3] ^= 0x01;
    fs::write(&weights, &changed).expect("change a byte");
    assert_refused(&public, &sig, &model, "a changed byte");
    fs::write(&weights, &original).expect("restore");
    assert_verifies(&public, &sig, &model);

    // A removed file.
    let card = model.join("README.md");
    let card_text = fs::read(&card).expect("read the card");
    fs::remove_file(&card).expect("remove the card");
    assert_refused(&public, &sig, &model, "a removed file");
    fs::write(&card, card_text).expect("restore");

    // An added file.
    fs::write(model.join("extra.bin"), b"not signed").expect("add a file");
    assert_refused(&public, &sig, &model, "an added file");
    fs::remove_file(model.join("extra.bin")).expect("remove it again");
    assert_verifies(&public, &sig, &model);

    // Another key.
    let other = key_file("other-key.pub.pem");
    assert_refused(&other, &sig, &model, "another key");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_signature_inside_the_model_folder_is_ignored_as_mlflow_keeps_it() {
    let root = scratch("inside");
    let model = root.join("model");
    let sig = model.join("model.sig");
    fs::create_dir_all(&model).expect("model folder");
    signed_model(&model, &sig);
    assert_verifies(&key_file("test-key.pub.pem"), &sig, &model);
    let _ = fs::remove_dir_all(&root);
}
