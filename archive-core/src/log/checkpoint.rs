//! Signed checkpoints: C2SP tlog-checkpoint bodies (origin, tree size, base64 root) in C2SP
//! signed-note envelopes with Ed25519 signatures, and the key files that sign them.
//!
//! The formats are the transparency-log community's, not ours, so a witness or an auditor's
//! existing tooling reads our checkpoints: <https://c2sp.org/tlog-checkpoint>,
//! <https://c2sp.org/signed-note>.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::log::merkle::Hash;
use crate::{Error, IoContext, Result};

/// Signed-note signature type byte for Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Prefix of a private key file (the Go `golang.org/x/mod/sumdb/note` convention).
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

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
        if typed.len() != 33 || typed[0] != ED25519_TYPE || validate_key_name(name).is_err() {
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

/// The log's signing key.
pub struct LogKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "LogKey({})", self.verifier().encode())
    }
}

impl LogKey {
    /// Makes a new random key named `name` (the store's origin).
    pub fn generate(name: &str) -> Result<LogKey> {
        validate_key_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::System(format!("no system randomness: {e}")))?;
        Ok(LogKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// A key from a known 32-byte Ed25519 seed: for test vectors and key escrow tooling.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<LogKey> {
        validate_key_name(name)?;
        Ok(LogKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The private key string `PRIVATE+KEY+name+hexid+base64(0x01 ‖ seed)`.
    fn encode(&self) -> String {
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex32(self.verifier().key_id()),
            B64.encode(typed)
        )
    }

    /// Parses a private key string.
    fn parse(s: &str) -> Result<LogKey> {
        let bad = || Error::Malformed {
            what: "signing key",
            reason: "not a mailvault signing key (expected PRIVATE+KEY+name+id+key)".into(),
        };
        let rest = s.trim().strip_prefix(PRIVATE_PREFIX).ok_or_else(bad)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let typed = B64.decode(key_b64).map_err(|_| bad())?;
        if typed.len() != 33 || typed[0] != ED25519_TYPE || validate_key_name(name).is_err() {
            return Err(bad());
        }
        let seed: [u8; 32] = typed[1..].try_into().map_err(|_| bad())?;
        let key = LogKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        };
        if hex32(key.verifier().key_id()) != id_hex {
            return Err(Error::Malformed {
                what: "signing key",
                reason: "its key ID does not match its key".into(),
            });
        }
        Ok(key)
    }

    /// Writes the key to a new file of mode 0600; refuses to overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::Exists {
                    path: path.to_path_buf(),
                    what: "a key",
                },
                _ => Error::io(path, e),
            })?;
        f.write_all(format!("{}\n", self.encode()).as_bytes()).at(path)?;
        f.sync_all().at(path)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<LogKey> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoKey(path.to_path_buf()))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        LogKey::parse(&text).map_err(|e| match e {
            Error::Malformed { reason, .. } => Error::Format {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Key name (the origin it signs for).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs a checkpoint, producing its signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> SignedCheckpoint {
        let text = checkpoint.body();
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.verifier().key_id().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(blob));
        SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            note,
        }
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ED25519_TYPE]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex32(id: [u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(id))
}

/// Key names (and origins) are non-empty and have no whitespace or `+` (signed-note rule).
pub fn validate_key_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(Error::Rejected(format!(
            "{name:?} cannot name a log: it must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = LogKey::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [9; 32],
        };
        let signed = key.sign(&cp);
        let vk = VerifierKey::parse(&key.verifier().encode()).unwrap();
        assert_eq!(vk.verify_note(&signed.note).unwrap().checkpoint, cp);
        let forged = signed.note.replace("\n42\n", "\n43\n");
        assert!(vk.verify_note(&forged).is_err());
        let other = LogKey::generate("example.com/log").unwrap();
        assert!(other.verifier().verify_note(&signed.note).is_err());
    }

    #[test]
    fn private_key_round_trips() {
        let key = LogKey::generate("mailvault/abc").unwrap();
        let again = LogKey::parse(&key.encode()).unwrap();
        assert_eq!(again.verifier(), key.verifier());
    }
}
