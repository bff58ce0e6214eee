//! Model signatures in the OpenSSF model signing format, key-based (`docs/model-signing.md`).
//!
//! A signature is a Sigstore bundle (JSON) holding a DSSE envelope whose payload is an in-toto
//! statement listing every signed file with its sha256; the envelope is signed with ECDSA P-256
//! over SHA-256. Independent tools verify it (`model_signing verify key --public_key KEY.pem
//! --signature model.sig DIR`).
//!
//! Pure: the caller passes each file's digest, computed while the file was streamed to the
//! registry, so signing never reads a model twice. Signatures are deterministic (RFC 6979): the
//! same files signed with the same key give the same bytes, so a registration repeated after a
//! crash pushes the same signature again instead of a second one.
//!
//! Imports: nothing of the crate.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Media type of the bundle (OCI artifact type of the signature referrer).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The signature's file name next to the model's files (MLflow) and in the OCI referrer.
pub const SIGNATURE_FILE: &str = "model.sig";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// What is wrong with a signing key. Never contains key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "it holds no PEM private key (expected a block \"-----BEGIN PRIVATE KEY-----\" (PKCS #8) \
         or \"-----BEGIN EC PRIVATE KEY-----\" (SEC 1))"
    )]
    NoPrivateKey,
    #[error("the private key is encrypted; store it unencrypted in the Secret")]
    Encrypted,
    #[error("the {0} block is not an ECDSA P-256 private key")]
    NotP256(&'static str),
}

/// An ECDSA P-256 private key read from a Secret, with its public half.
pub struct ModelSigningKey {
    key: SigningKey,
    public_pem: String,
    fingerprint: String,
}

impl fmt::Debug for ModelSigningKey {
    /// Names the key by its fingerprint only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelSigningKey(sha256:{})", self.fingerprint)
    }
}

/// Two keys are the same when their public halves are.
impl PartialEq for ModelSigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl ModelSigningKey {
    /// Reads a PEM private key: PKCS #8 (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`) or SEC 1 (`openssl ecparam -name prime256v1 -genkey`, whose
    /// leading EC PARAMETERS block is skipped).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Encrypted);
        }
        let secret = if let Some(block) = pem_block(pem, "EC PRIVATE KEY") {
            if block.contains("Proc-Type: 4,ENCRYPTED") {
                return Err(KeyError::Encrypted);
            }
            p256::SecretKey::from_sec1_pem(&block)
                .map_err(|_| KeyError::NotP256("EC PRIVATE KEY"))?
        } else if let Some(block) = pem_block(pem, "PRIVATE KEY") {
            p256::SecretKey::from_pkcs8_pem(&block).map_err(|_| KeyError::NotP256("PRIVATE KEY"))?
        } else {
            return Err(KeyError::NoPrivateKey);
        };
        let public_pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError::NotP256("PRIVATE KEY"))?;
        let fingerprint = hex::encode(Sha256::digest(public_pem.as_bytes()));
        Ok(Self {
            key: SigningKey::from(&secret),
            public_pem,
            fingerprint,
        })
    }

    /// The public key, PEM (SubjectPublicKeyInfo, LF line endings): what verifiers are given.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Hex sha256 of [`Self::public_key_pem`]: the bundle's key hint, and how status and the
    /// audit record name the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The first PEM block with this label, from its BEGIN line to its END line.
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(format!("{}\n", &text[start..stop]))
}

/// One signed file: its path inside the model (`/`-separated) and the hex sha256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedFile {
    pub path: String,
    pub sha256: String,
}

/// The in-toto statement over `files` (sorted by path components, as the reference tool does).
pub fn statement(model_name: &str, files: &[SignedFile]) -> Value {
    let mut files: Vec<&SignedFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    let mut root = Sha256::new();
    for f in &files {
        // A digest that is not 32 bytes of hex cannot come from a registry client; it is
        // hashed as its text so the signature still binds it (and verification fails loudly).
        match hex::decode(&f.sha256) {
            Ok(raw) if raw.len() == 32 => root.update(&raw),
            _ => root.update(f.sha256.as_bytes()),
        }
    }
    let resources: Vec<Value> = files
        .iter()
        .map(|f| json!({"algorithm": "sha256", "digest": f.sha256, "name": f.path}))
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": false,
                "ignore_paths": [SIGNATURE_FILE],
            },
            "resources": resources,
        },
    })
}

/// DSSE's pre-authentication encoding of a payload.
fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        PAYLOAD_TYPE.len(),
        PAYLOAD_TYPE,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The signature of `files` as a Sigstore bundle, JSON.
pub fn sign(key: &ModelSigningKey, model_name: &str, files: &[SignedFile]) -> Vec<u8> {
    let payload = statement(model_name, files).to_string().into_bytes();
    let signature: Signature = key.key.sign(&pae(&payload));
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.fingerprint}},
        "dsseEnvelope": {
            "payload": STANDARD.encode(&payload),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": STANDARD.encode(signature.to_der().as_bytes())}],
        },
    });
    bundle.to_string().into_bytes()
}

#[cfg(test)]
mod tests;
