//! The integrity of one message, checked now, for a principal who may read it: the web's
//! integrity panel. The checks are archive-verify's, the ones `mailvault verify` and
//! `mailvault proof` make: the blake3 of the bytes against the record's leaf, the newest
//! checkpoint's signature against the store's public key, and the RFC 6962 inclusion proof
//! of the leaf in that checkpoint's tree.

use archive_verify::merkle::leaf_hash;
use std::sync::Mutex;

use archive_verify::note::{SignedCheckpoint, VerifierKey};

use super::ScopedMessage;
use crate::log::record::Leaf;
use crate::search::Principal;
use crate::{Error, Result, Store};

/// What the checks found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integrity {
    /// The message record's seq.
    pub seq: u64,
    /// Its receive time, microseconds since the Unix epoch (UTC).
    pub received_us: i64,
    /// blake3 of the bytes as read now, hex.
    pub blake3: String,
    /// blake3 the record's leaf holds, hex.
    pub recorded_blake3: String,
    /// Tree size of the checkpoint the proof leads to (0: none).
    pub checkpoint_size: u64,
    /// Every failed check, in words; empty when all passed.
    pub failures: Vec<String>,
}

impl Integrity {
    /// Whether every check passed.
    pub fn verified(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Store {
    /// Checks message `seq` for `principal` (scope as [`Store::message_for`]): its bytes,
    /// its leaf, and its inclusion in the newest signed checkpoint. A failed check is a
    /// finding in the answer, not an error; errors are for a seq the principal may not read
    /// and for a store that cannot answer.
    pub fn integrity_for(&self, principal: &Principal, seq: u64) -> Result<Integrity> {
        let message = self.message_for(principal, seq)?;
        Ok(self.integrity_of(&message))
    }

    /// [`Store::integrity_for`] of a message already read with [`Store::message_for`]: the
    /// hash is computed over the bytes that read returned (a page showing them need not read
    /// them twice).
    pub fn integrity_of(&self, message: &ScopedMessage) -> Integrity {
        let seq = message.hit.seq;
        let key = self.layout().verifier_key();
        let checkpoint = self.latest_checkpoint().map(|(_, c)| c.note);
        let proof = match &checkpoint {
            Some(note) => {
                let size = key
                    .as_ref()
                    .ok()
                    .and_then(|k| verified(k, note).ok())
                    .map_or(0, |c| c.checkpoint.size);
                if size >= seq {
                    Some(self.inclusion_proof(seq, size))
                } else {
                    None
                }
            }
            None => None,
        };
        let key = key.map_err(|e| e.to_string());
        let proof = proof.map(|p| p.map_err(|e| e.to_string()));
        check(
            seq,
            &message.raw,
            &message.leaf_bytes,
            key.as_ref(),
            checkpoint.as_deref(),
            proof,
        )
    }
}

/// The checks, on what was read: `raw` and `leaf_bytes` of record `seq`, the store's `key`,
/// the newest checkpoint `note`, and the inclusion `proof` path into it.
pub fn check(
    seq: u64,
    raw: &[u8],
    leaf_bytes: &[u8],
    key: std::result::Result<&VerifierKey, &String>,
    note: Option<&str>,
    proof: Option<std::result::Result<Vec<archive_verify::merkle::Hash>, String>>,
) -> Integrity {
    let mut failures = Vec::new();
    let now = blake3::hash(raw);
    let leaf = Leaf::decode(leaf_bytes).map_err(Error::from);
    let (recorded, received_us) = match &leaf {
        Ok(leaf) => match leaf.content() {
            Some((hash, len)) => {
                if len != raw.len() as u64 {
                    failures.push(format!("the record says {len} bytes, {} were read", raw.len()));
                }
                (hex(&hash), leaf.time_us)
            }
            None => {
                failures.push("the record is not a message".into());
                (String::new(), leaf.time_us)
            }
        },
        Err(e) => {
            failures.push(format!("the record's leaf does not decode: {e}"));
            (String::new(), 0)
        }
    };
    if leaf.as_ref().is_ok_and(|l| l.seq != seq) {
        failures.push(format!("the leaf is not record {seq}'s"));
    }
    if recorded != hex(now.as_bytes()) {
        failures.push("the bytes' blake3 differs from the one the record holds".into());
    }
    let mut checkpoint_size = 0;
    match (key, note) {
        (Err(e), _) => failures.push(format!("no public key to check the checkpoint with: {e}")),
        (Ok(_), None) => failures.push("the log has no signed checkpoint yet".into()),
        (Ok(key), Some(note)) => match verified(key, note) {
            Err(e) => failures.push(format!("the newest checkpoint's signature does not verify: {e}")),
            Ok(signed) => {
                let size = signed.checkpoint.size;
                checkpoint_size = size;
                match proof {
                    None => failures.push(format!(
                        "record {seq} is not under the newest checkpoint ({size}) yet"
                    )),
                    Some(Err(e)) => failures.push(format!("no inclusion proof: {e}")),
                    Some(Ok(path)) => {
                        let included = seq >= 1
                            && archive_verify::merkle::verify_inclusion(
                                &leaf_hash(leaf_bytes),
                                seq - 1,
                                size,
                                &path,
                                &signed.checkpoint.root,
                            );
                        if !included {
                            failures.push(format!(
                                "the inclusion proof of record {seq} does not lead to the checkpoint's root"
                            ));
                        }
                    }
                }
            }
        },
    }
    Integrity {
        seq,
        received_us,
        blake3: hex(now.as_bytes()),
        recorded_blake3: recorded,
        checkpoint_size,
        failures,
    }
}

/// `note` checked against `key`, remembered for the last pair: every message page checks the
/// same newest checkpoint until the next one is signed (an ed25519 verification each time
/// otherwise). Other bytes of either are checked afresh.
fn verified(key: &VerifierKey, note: &str) -> std::result::Result<SignedCheckpoint, String> {
    type Last = Option<(VerifierKey, String, std::result::Result<SignedCheckpoint, String>)>;
    static LAST: Mutex<Last> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((k, n, result)) = last.as_ref() {
        if k == key && n == note {
            return result.clone();
        }
    }
    let result = key.verify_note(note).map_err(|e| e.to_string());
    *last = Some((key.clone(), note.to_string(), result.clone()));
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::OnDuplicate;

    #[test]
    fn a_stored_message_verifies_and_a_changed_byte_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::views::live_test_store(dir.path());
        let raw = b"From: a@example.com\r\nTo: b@example.com\r\n\r\nhello\r\n";
        let seq = store
            .append_message(
                &Envelope::lmtp("a@example.com", &["b@example.com"]),
                raw,
                OnDuplicate::RecordArrival,
            )
            .unwrap()
            .seq;
        let who = Principal::user(["b@example.com"]).unwrap();
        let found = store.integrity_for(&who, seq).unwrap();
        assert!(found.verified(), "{:?}", found.failures);
        assert_eq!(found.blake3, found.recorded_blake3);
        assert!(found.checkpoint_size >= seq);

        let message = store.message_for(&who, seq).unwrap();
        let key = store.layout().verifier_key().unwrap();
        let (_, signed) = store.latest_checkpoint().unwrap();
        let path = || Some(Ok(store.inclusion_proof(seq, signed.checkpoint.size).unwrap()));
        let mut changed = message.raw.clone();
        changed[0] ^= 1;
        let bad = check(
            seq,
            &changed,
            &message.leaf_bytes,
            Ok(&key),
            Some(&signed.note),
            path(),
        );
        assert!(!bad.verified());
        assert!(bad.failures[0].contains("blake3"), "{:?}", bad.failures);
        let mut leaf = message.leaf_bytes.clone();
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        let bad = check(seq, &message.raw, &leaf, Ok(&key), Some(&signed.note), path());
        assert!(!bad.verified());
        let mut lines: Vec<&str> = signed.note.split('\n').collect();
        lines[1] = "999";
        let forged = lines.join("\n");
        let bad = check(
            seq,
            &message.raw,
            &message.leaf_bytes,
            Ok(&key),
            Some(&forged),
            path(),
        );
        assert!(
            bad.failures.iter().any(|f| f.contains("signature")),
            "{:?}",
            bad.failures
        );
        // The remembered verification is the last (key, note) pair's, nothing broader.
        let good = check(
            seq,
            &message.raw,
            &message.leaf_bytes,
            Ok(&key),
            Some(&signed.note),
            path(),
        );
        assert!(good.verified(), "{:?}", good.failures);
        // Of the message as read once: the same findings.
        assert_eq!(store.integrity_of(&message), found);
        store.close().unwrap();
    }
}
