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

use archive_verify::note::{hex32, is_valid_key_name, ED25519_TYPE};
pub use archive_verify::note::{Checkpoint, SignedCheckpoint, VerifierKey};

use crate::{Error, IoContext, Result};

/// Prefix of a private key file (the Go `golang.org/x/mod/sumdb/note` convention).
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

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
        VerifierKey::new(&self.name, self.key.verifying_key())
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

/// Key names (and origins) are non-empty and have no whitespace or `+` (signed-note rule).
pub fn validate_key_name(name: &str) -> Result<()> {
    if !is_valid_key_name(name) {
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
