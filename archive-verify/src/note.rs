//! Signed checkpoints: C2SP tlog-checkpoint bodies (origin, tree size, base64 root) in C2SP
//! signed-note envelopes with Ed25519 signatures, and the verifier keys that check them.
//!
//! The formats are the transparency-log community's, not ours, so a witness or an auditor's
//! existing tooling reads our checkpoints: <https://c2sp.org/tlog-checkpoint>,
//! <https://c2sp.org/signed-note>.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::{Error, Result};

/// Signed-note signature type byte for Ed25519.
pub const ED25519_TYPE: u8 = 0x01;

/// The tree head a checkpoint states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line: the store's unique name.
    pub origin: String,
    /// Number of leaves the tree has.
    pub size: u64,
    /// RFC 6962 root of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a note text (the part before the blank line).
    pub fn parse_body(text: &str) -> Result<Checkpoint> {
        let bad = |why: &str| Error::Verification(format!("malformed checkpoint: {why}"));
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| {
                l.parse::<u64>()
                    .ok()
                    .filter(|_| !l.starts_with('+') && (l == "0" || !l.starts_with('0')))
            })
            .ok_or_else(|| bad("tree size is not a decimal number"))?;
        let root_b64 = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// A checkpoint together with the signed note it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    /// The complete signed note, as stored and as handed to auditors.
    pub note: String,
}

/// The public half of the log key, as auditors pin it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name (the store's origin).
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// The verifier of `key` under `name` (a signing side makes its own this way).
    pub fn new(name: &str, key: ed25519_dalek::VerifyingKey) -> VerifierKey {
        VerifierKey {
            name: name.to_string(),
            key,
        }
    }

    /// 4-byte key ID of the signed-note spec: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.as_bytes())
    }

    /// The verifier key string `name+hexid+base64(0x01 ‖ pubkey)`.
    pub fn encode(&self) -> String {
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex32(self.key_id()), B64.encode(typed))
    }

    /// Parses a verifier key string.
    pub fn parse(s: &str) -> Result<VerifierKey> {
        let bad = || Error::Malformed {
            what: "verifier key",
            reason: format!("not a signed-note verifier key: {:?}", s.trim()),
        };
        // Names never contain '+', base64 may: split at the first two.
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let typed = B64.decode(key_b64).map_err(|_| bad())?;
        if typed.len() != 33 || typed[0] != ED25519_TYPE || !is_valid_key_name(name) {
            return Err(bad());
        }
        let raw: [u8; 32] = typed[1..].try_into().map_err(|_| bad())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| bad())?;
        let vk = VerifierKey {
            name: name.to_string(),
            key,
        };
        if hex32(vk.key_id()) != id_hex {
            return Err(Error::Malformed {
                what: "verifier key",
                reason: "its key ID does not match its name and key".into(),
            });
        }
        Ok(vk)
    }

    /// Verifies a signed checkpoint note; returns the checkpoint if a signature by this key
    /// over the note text is valid.
    pub fn verify_note(&self, note: &str) -> Result<SignedCheckpoint> {
        let (text, sigs) = note
            .split_once("\n\n")
            .map(|(t, s)| (format!("{t}\n"), s))
            .ok_or_else(|| Error::Verification("checkpoint note has no signature block".into()))?;
        let mut found = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(Error::Verification(format!("malformed signature line {line:?}")));
            };
            let Some((name, sig_b64)) = rest.split_once(' ') else {
                return Err(Error::Verification(format!("malformed signature line {line:?}")));
            };
            let sig = B64
                .decode(sig_b64)
                .map_err(|_| Error::Verification("signature is not base64".into()))?;
            if name != self.name || sig.len() != 68 || sig[..4] != self.key_id() {
                continue; // someone else's signature (a witness, say): not ours to judge
            }
            let sig = ed25519_dalek::Signature::from_slice(&sig[4..])
                .map_err(|_| Error::Verification("malformed Ed25519 signature".into()))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| Error::Verification("checkpoint signature does not verify".into()))?;
            found = true;
        }
        if !found {
            return Err(Error::Verification(format!(
                "checkpoint carries no signature by key {}",
                self.name
            )));
        }
        let checkpoint = Checkpoint::parse_body(&text)?;
        if checkpoint.origin != self.name {
            return Err(Error::Verification(format!(
                "checkpoint origin {:?} is not this log's {:?}",
                checkpoint.origin, self.name
            )));
        }
        Ok(SignedCheckpoint {
            checkpoint,
            note: note.to_string(),
        })
    }
}

/// Key ID of the signed-note spec: `SHA-256(name ‖ 0x0A ‖ type ‖ pubkey)[:4]`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ED25519_TYPE]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key ID as the eight hex digits of verifier key strings.
pub fn hex32(id: [u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(id))
}

/// Key names (and origins) are non-empty and have no whitespace or `+` (signed-note rule).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}
