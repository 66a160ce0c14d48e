//! Bundle signatures (docs/SIGNING.md).
//!
//! A bundle's `manifest.sig` is a detached ed25519 signature over
//! [`CONTEXT`] followed by the exact bytes of its `manifest.toml`. The
//! manifest pins the model's size and sha256, so a valid signature covers
//! the model as well: [`Bundle::open`](super::Bundle::open) then checks the
//! model against the manifest as before.
//!
//! `manifest.sig` is a small TOML file:
//!
//! ```toml
//! key = "ed25519:<base64 of the 32-byte public key>"
//! signature = "<base64 of the 64-byte signature>"
//! ```
//!
//! The key written there only lets an error say *who* signed; trust comes
//! from the daemon's `[models] trusted_keys`, never from the file. Everything
//! here is pure (bytes and text in, verdicts out), so every case is testable
//! without files.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The signature file next to `manifest.toml`.
pub const SIG_FILE: &str = "manifest.sig";

/// Largest `manifest.sig` read (a real one is ~150 bytes).
pub const MAX_SIG_BYTES: u64 = 4096;

/// How a public key is written in `trusted_keys` and in `manifest.sig`.
pub const KEY_PREFIX: &str = "ed25519:";

/// Signed before the manifest's bytes: a signature made for anything else
/// with the same key cannot pass for a bundle signature (domain separation).
/// models/facegate_sign/__init__.py signs with the same prefix.
pub const CONTEXT: &[u8] = b"facegate bundle manifest v1\n";

/// An ed25519 public key, written `ed25519:<base64>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first characters of the base64, for tables.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s.chars().take(KEY_PREFIX.len() + 10).collect()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", B64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = String;

    fn from_str(s: &str) -> Result<PublicKey, String> {
        let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or_else(|| {
            format!("{s:?} is not a public key: expected \"{KEY_PREFIX}<base64 of 32 bytes>\"")
        })?;
        let bytes = B64
            .decode(b64)
            .map_err(|e| format!("{s:?}: the base64 is invalid ({e})"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{s:?}: an ed25519 key is 32 bytes, not {}", b.len()))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| format!("{s:?} is not a valid ed25519 public key"))?;
        Ok(PublicKey(bytes))
    }
}

/// A parsed `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFile {
    /// Who says they signed (checked: the signature must verify under it).
    pub key: PublicKey,
    pub signature: [u8; 64],
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SigToml {
    key: String,
    signature: String,
}

impl SignatureFile {
    /// Parse `manifest.sig`. Pure.
    pub fn parse(text: &str) -> Result<SignatureFile, String> {
        let t: SigToml = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let key = t.key.parse::<PublicKey>()?;
        let sig = B64
            .decode(t.signature.trim())
            .map_err(|e| format!("signature: the base64 is invalid ({e})"))?;
        let signature: [u8; 64] = sig.try_into().map_err(|b: Vec<u8>| {
            format!(
                "signature: an ed25519 signature is 64 bytes, not {}",
                b.len()
            )
        })?;
        Ok(SignatureFile { key, signature })
    }

    /// The file's text (what models/facegate_sign writes, byte for byte).
    pub fn to_text(&self) -> String {
        format!(
            "# ed25519 over \"facegate bundle manifest v1\\n\" + manifest.toml (docs/SIGNING.md)\nkey = \"{}\"\nsignature = \"{}\"\n",
            self.key,
            B64.encode(self.signature)
        )
    }

    /// Whether the signature is the key's over `manifest` (strict RFC 8032
    /// verification: no malleable or small-order encodings).
    pub fn verifies(&self, manifest: &[u8]) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.key.0) else {
            return false;
        };
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&signed_message(manifest), &sig).is_ok()
    }
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + manifest.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(manifest);
    m
}

/// The public key of a 32-byte ed25519 seed (the private key file's content).
pub fn public_key(seed: &[u8; 32]) -> PublicKey {
    PublicKey(SigningKey::from_bytes(seed).verifying_key().to_bytes())
}

/// Sign manifest bytes with a 32-byte seed. The signer on a workstation is
/// models/sign (Python); this one is for tests and tools, and both make the
/// same bytes (ed25519 is deterministic).
pub fn sign(seed: &[u8; 32], manifest: &[u8]) -> SignatureFile {
    let sk = SigningKey::from_bytes(seed);
    SignatureFile {
        key: PublicKey(sk.verifying_key().to_bytes()),
        signature: sk.sign(&signed_message(manifest)).to_bytes(),
    }
}

/// What a bundle's signature is, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Signed by a key in `trusted_keys`.
    Trusted(PublicKey),
    /// A valid signature by a key that is not in `trusted_keys`.
    Untrusted(PublicKey),
    /// No `manifest.sig`.
    Unsigned,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Trusted(k) => write!(f, "signed by {k} (trusted)"),
            Status::Untrusted(k) => write!(f, "signed by {k} (not a trusted key)"),
            Status::Unsigned => f.write_str("unsigned"),
        }
    }
}

/// Why a bundle's signature is refused. Each case has its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("not signed (no {SIG_FILE}): sign it with `models/sign`, or list no trusted_keys / set [models] allow_unsigned = true on a development machine")]
    Missing,
    #[error("{SIG_FILE} is invalid: {0}")]
    Malformed(String),
    #[error("signature by {key} does not match manifest.toml: the manifest was changed after it was signed (tampered, or edited by hand: re-sign it with `models/sign`)")]
    Invalid { key: PublicKey },
    #[error("signed by {key}, which is not in [models] trusted_keys ({trusted}): add that key if you trust whoever built the bundle")]
    UntrustedKey { key: PublicKey, trusted: String },
}

/// Which signatures a bundle needs: the daemon's `[models] trusted_keys`
/// and `allow_unsigned`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    pub trusted_keys: Vec<PublicKey>,
    /// Admit bundles that are unsigned or signed by an untrusted key. A
    /// signature that does not verify is refused all the same.
    pub allow_unsigned: bool,
}

impl TrustPolicy {
    /// What the signature `sig` (a `manifest.sig`'s text, None when there is
    /// none) says about `manifest`, without applying the policy. Refuses only
    /// a malformed or non-verifying signature.
    pub fn status(&self, manifest: &[u8], sig: Option<&str>) -> Result<Status, SignError> {
        let Some(text) = sig else {
            return Ok(Status::Unsigned);
        };
        let sf = SignatureFile::parse(text).map_err(SignError::Malformed)?;
        if !sf.verifies(manifest) {
            return Err(SignError::Invalid { key: sf.key });
        }
        Ok(if self.trusted_keys.contains(&sf.key) {
            Status::Trusted(sf.key)
        } else {
            Status::Untrusted(sf.key)
        })
    }

    /// [`status`](Self::status), then the policy: an unsigned bundle or an
    /// untrusted signer is refused unless `allow_unsigned`.
    pub fn verify(&self, manifest: &[u8], sig: Option<&str>) -> Result<Status, SignError> {
        let st = self.status(manifest, sig)?;
        match st {
            Status::Trusted(_) => Ok(st),
            _ if self.allow_unsigned => Ok(st),
            Status::Unsigned => Err(SignError::Missing),
            Status::Untrusted(key) => Err(SignError::UntrustedKey {
                key,
                trusted: self.trusted_list(),
            }),
        }
    }

    fn trusted_list(&self) -> String {
        if self.trusted_keys.is_empty() {
            return "none listed".into();
        }
        let keys: Vec<String> = self.trusted_keys.iter().map(|k| k.to_string()).collect();
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_A: [u8; 32] = [7; 32];
    const SEED_B: [u8; 32] = [9; 32];
    const MANIFEST: &[u8] = b"schema = 1\nname = \"x\"\n[model]\nsha256 = \"00\"\n";

    fn policy(keys: &[[u8; 32]], allow_unsigned: bool) -> TrustPolicy {
        TrustPolicy {
            trusted_keys: keys.iter().map(public_key).collect(),
            allow_unsigned,
        }
    }

    #[test]
    fn a_trusted_signature_verifies() {
        let sig = sign(&SEED_A, MANIFEST).to_text();
        let st = policy(&[SEED_B, SEED_A], false)
            .verify(MANIFEST, Some(&sig))
            .unwrap();
        assert_eq!(st, Status::Trusted(public_key(&SEED_A)));
    }

    #[test]
    fn a_changed_manifest_is_refused_even_when_unsigned_is_allowed() {
        let sig = sign(&SEED_A, MANIFEST).to_text();
        let mut tampered = MANIFEST.to_vec();
        tampered[MANIFEST.len() - 3] ^= 1;
        for allow in [false, true] {
            let err = policy(&[SEED_A], allow)
                .verify(&tampered, Some(&sig))
                .unwrap_err();
            assert_eq!(
                err,
                SignError::Invalid {
                    key: public_key(&SEED_A)
                }
            );
            assert!(err.to_string().contains("changed after it was signed"));
        }
        // Appending to the manifest is a change too.
        let mut longer = MANIFEST.to_vec();
        longer.extend_from_slice(b"\n");
        assert!(matches!(
            policy(&[SEED_A], false).verify(&longer, Some(&sig)),
            Err(SignError::Invalid { .. })
        ));
    }

    #[test]
    fn a_wrong_key_is_refused_unless_unsigned_is_allowed() {
        let sig = sign(&SEED_B, MANIFEST).to_text();
        let err = policy(&[SEED_A], false)
            .verify(MANIFEST, Some(&sig))
            .unwrap_err();
        assert!(
            matches!(err, SignError::UntrustedKey { key, .. } if key == public_key(&SEED_B)),
            "{err}"
        );
        assert!(err.to_string().contains(&public_key(&SEED_A).to_string()));
        assert_eq!(
            policy(&[SEED_A], true).verify(MANIFEST, Some(&sig)),
            Ok(Status::Untrusted(public_key(&SEED_B)))
        );
    }

    #[test]
    fn a_signature_claiming_a_trusted_key_but_made_by_another_is_invalid() {
        let mut sf = sign(&SEED_B, MANIFEST);
        sf.key = public_key(&SEED_A);
        let err = policy(&[SEED_A], true)
            .verify(MANIFEST, Some(&sf.to_text()))
            .unwrap_err();
        assert!(matches!(err, SignError::Invalid { .. }), "{err}");
    }

    #[test]
    fn a_missing_signature_is_refused_unless_allowed() {
        assert_eq!(
            policy(&[SEED_A], false).verify(MANIFEST, None),
            Err(SignError::Missing)
        );
        assert!(SignError::Missing.to_string().contains("models/sign"));
        assert_eq!(
            policy(&[SEED_A], true).verify(MANIFEST, None),
            Ok(Status::Unsigned)
        );
        assert_eq!(
            policy(&[], true).verify(MANIFEST, None),
            Ok(Status::Unsigned)
        );
    }

    #[test]
    fn malformed_signature_files_are_refused() {
        let good = sign(&SEED_A, MANIFEST);
        let b64sig = B64.encode(good.signature);
        let cases = [
            ("".to_string(), "missing field"),
            (format!("key = \"{}\"\n", good.key), "signature"),
            (
                format!("key = \"rsa:AAAA\"\nsignature = \"{b64sig}\"\n"),
                "not a public key",
            ),
            (
                format!(
                    "key = \"{}\"\nsignature = \"{}\"\n",
                    good.key,
                    B64.encode([1u8; 63])
                ),
                "64 bytes",
            ),
            (
                format!("key = \"{}\"\nsignature = \"***\"\n", good.key),
                "base64",
            ),
            (
                format!(
                    "key = \"{}\"\nsignature = \"{b64sig}\"\nextra = 1\n",
                    good.key
                ),
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = policy(&[SEED_A], true)
                .verify(MANIFEST, Some(&text))
                .unwrap_err();
            assert!(
                matches!(&err, SignError::Malformed(m) if m.contains(needle)),
                "{text:?}: {err} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn public_keys_round_trip_and_bad_ones_are_explained() {
        let k = public_key(&SEED_A);
        assert_eq!(k.to_string().parse::<PublicKey>(), Ok(k));
        assert!(k.to_string().starts_with("ed25519:"));
        assert_eq!(k.to_string().len(), "ed25519:".len() + 44);
        assert!("AAAA"
            .parse::<PublicKey>()
            .unwrap_err()
            .contains("ed25519:"));
        assert!("ed25519:AAAA"
            .parse::<PublicKey>()
            .unwrap_err()
            .contains("32 bytes"));
        assert!("ed25519:!!"
            .parse::<PublicKey>()
            .unwrap_err()
            .contains("base64"));
    }

    /// The same vector is checked in models/tests/test_sign.py: the Python
    /// signer and this verifier agree byte for byte (RFC 8032 signatures are
    /// deterministic), including the file's text.
    #[test]
    fn matches_the_python_signer() {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        let sf = sign(&seed, b"schema = 1\n");
        assert_eq!(
            sf.key.to_string(),
            "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        );
        assert_eq!(sf.to_text(), PYTHON_VECTOR);
        assert_eq!(SignatureFile::parse(PYTHON_VECTOR), Ok(sf.clone()));
        assert!(sf.verifies(b"schema = 1\n"));
    }

    const PYTHON_VECTOR: &str = "# ed25519 over \"facegate bundle manifest v1\\n\" + manifest.toml (docs/SIGNING.md)\nkey = \"ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\"\nsignature = \"lonau/FaHMbnUSRaRIOUulFGzoNg11j23D969CLXBjN4SD5KyylYdIWzZFBskI2RjR8Y3M+KO0NICfezqINUBA==\"\n";
}
