//! Witness cosignatures: C2SP `cosignature/v1` (Ed25519) note signatures over our checkpoints,
//! and the witness verifier keys that check them (<https://c2sp.org/tlog-cosignature>).
//!
//! A cosignature is a signed-note signature line `— <witness name> base64(key ID ‖ timestamp ‖
//! signature)`: the key ID is `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`, the timestamp an
//! 8-byte big-endian POSIX time, the signature Ed25519 over
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's note text. It states that
//! at that time the witness had seen no larger tree of the log than this one, and that this
//! one extends every tree of the log it saw before.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::note::{hex32, is_valid_key_name};
use crate::{Error, Result};

/// Signed-note signature type byte of `cosignature/v1` Ed25519 witness keys.
pub const COSIGNATURE_V1_TYPE: u8 = 0x04;
/// Bytes of a decoded `cosignature/v1` signature: key ID, timestamp, Ed25519 signature.
const SIGNATURE_LEN: usize = 4 + 8 + 64;
/// Signature lines looked at in one note (a note is hostile input).
const MAX_SIGNATURE_LINES: usize = 100;

/// When a witness cosigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CosignedAt {
    /// The cosignature's timestamp: POSIX seconds.
    pub time: u64,
}

/// A witness's public key, as its operator publishes it: the verifier key string
/// `name+hexid+base64(0x04 ‖ Ed25519 public key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessKey {
    /// The witness's key name (often a schema-less URL such as `witness.example/w1`).
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl WitnessKey {
    /// The witness key `key` under `name`.
    pub fn new(name: &str, key: ed25519_dalek::VerifyingKey) -> Result<WitnessKey> {
        if !is_valid_key_name(name) {
            return Err(Error::Malformed {
                what: "witness key",
                reason: format!("{name:?} is not a signed-note key name"),
            });
        }
        Ok(WitnessKey {
            name: name.to_string(),
            key,
        })
    }

    /// The 4-byte key ID: `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0x0A, COSIGNATURE_V1_TYPE]);
        h.update(self.key.as_bytes());
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The verifier key string.
    pub fn encode(&self) -> String {
        let mut typed = vec![COSIGNATURE_V1_TYPE];
        typed.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex32(self.key_id()), B64.encode(typed))
    }

    /// Parses a verifier key string of type 0x04 (an Ed25519 archive key, type 0x01, is not a
    /// witness key: its signatures sign other bytes).
    pub fn parse(s: &str) -> Result<WitnessKey> {
        let bad = |why: &str| Error::Malformed {
            what: "witness key",
            reason: format!("{why}: {:?}", s.trim()),
        };
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not a verifier key name+id+key"));
        };
        let typed = B64.decode(key_b64).map_err(|_| bad("its key is not base64"))?;
        match typed.first() {
            Some(&COSIGNATURE_V1_TYPE) => {}
            Some(t) => return Err(bad(&format!("key type {t:#04x} is not cosignature/v1 (0x04)"))),
            None => return Err(bad("empty key")),
        }
        let raw: [u8; 32] = typed[1..]
            .try_into()
            .map_err(|_| bad("not a 32-byte Ed25519 key"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| bad("not an Ed25519 key"))?;
        let wk = WitnessKey::new(name, key)?;
        if hex32(wk.key_id()) != id_hex {
            return Err(bad("its key ID does not match its name and key"));
        }
        Ok(wk)
    }

    /// Checks this witness's cosignature in `note`: a signed checkpoint note whose signature
    /// lines include the witness's (other lines, the archive's say, are passed over). Returns
    /// when it cosigned. Fails when no line is by this key (name and key ID) or when one is
    /// and does not verify.
    pub fn verify_cosignature(&self, note: &str) -> Result<CosignedAt> {
        let (text, sigs) = note
            .split_once("\n\n")
            .map(|(t, s)| (format!("{t}\n"), s))
            .ok_or_else(|| Error::Verification("the note has no signature block".into()))?;
        let id = self.key_id();
        let mut found = None;
        for line in sigs.lines().take(MAX_SIGNATURE_LINES) {
            let Some((name, blob)) = line.strip_prefix("\u{2014} ").and_then(|r| r.split_once(' ')) else {
                return Err(Error::Verification(format!("malformed signature line {line:?}")));
            };
            if name != self.name {
                continue;
            }
            let Ok(sig) = B64.decode(blob) else {
                return Err(Error::Verification(format!(
                    "cosignature of {name} is not base64"
                )));
            };
            if sig.get(..4) != Some(&id[..]) {
                continue; // another key of the same name: not this one to judge
            }
            let time = self.verify_signature(&text, &sig)?;
            if found.is_some() {
                return Err(Error::Verification(format!(
                    "two cosignatures by {} on one checkpoint",
                    self.name
                )));
            }
            found = Some(CosignedAt { time });
        }
        found.ok_or_else(|| {
            Error::Verification(format!(
                "no cosignature by witness key {} ({})",
                self.name,
                hex32(id)
            ))
        })
    }

    /// Verifies one decoded signature (key ID already matched) over note text `text`.
    fn verify_signature(&self, text: &str, sig: &[u8]) -> Result<u64> {
        if sig.len() != SIGNATURE_LEN {
            return Err(Error::Verification(format!(
                "cosignature of {} has {} bytes, not the {SIGNATURE_LEN} of cosignature/v1",
                self.name,
                sig.len()
            )));
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&sig[4..12]);
        let time = u64::from_be_bytes(stamp);
        if time > i64::MAX as u64 {
            return Err(Error::Verification(format!(
                "cosignature of {} has an impossible timestamp",
                self.name
            )));
        }
        let signature = ed25519_dalek::Signature::from_slice(&sig[12..])
            .map_err(|_| Error::Verification("malformed Ed25519 signature".into()))?;
        self.key
            .verify_strict(&signed_message(text, time), &signature)
            .map_err(|_| {
                Error::Verification(format!(
                    "cosignature of witness {} does not verify: not this checkpoint, or not this witness",
                    self.name
                ))
            })?;
        Ok(time)
    }
}

/// The bytes a `cosignature/v1` signs: `cosignature/v1\ntime <time>\n` and the note text
/// (the checkpoint's lines with their final newline, no signature lines).
pub fn signed_message(text: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// The timestamp of a `cosignature/v1` signature line's blob (base64 of key ID ‖ timestamp ‖
/// signature), without verifying it.
pub fn cosignature_time(blob_b64: &str) -> Result<u64> {
    let sig = B64
        .decode(blob_b64)
        .map_err(|_| Error::Verification("cosignature is not base64".into()))?;
    if sig.len() != SIGNATURE_LEN {
        return Err(Error::Verification("not a cosignature/v1 signature".into()));
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&sig[4..12]);
    Ok(u64::from_be_bytes(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 §7.1 test 1 key: a fixed key, so the vector below is reproducible anywhere.
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44,
        0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
    ];
    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> (ed25519_dalek::SigningKey, WitnessKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&SEED);
        let wk = WitnessKey::new("witness.example/w1", sk.verifying_key()).unwrap();
        (sk, wk)
    }

    fn cosign(sk: &ed25519_dalek::SigningKey, wk: &WitnessKey, text: &str, time: u64) -> String {
        use ed25519_dalek::Signer;
        let sig = sk.sign(&signed_message(text, time));
        let mut blob = wk.key_id().to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", wk.name, B64.encode(blob))
    }

    /// A native cosignature/v1 verifier key from transparency-dev/formats
    /// (note/note_cosigv1_test.go, "native algEd25519CosignatureV1 verifier"): its key ID is
    /// the spec's SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4], and it encodes back unchanged.
    #[test]
    fn a_published_witness_key_parses_and_encodes_back() {
        let text = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let key = WitnessKey::parse(text).unwrap();
        assert_eq!(key.name, "remora.n621.de");
        assert_eq!(key.encode(), text);
        // The same key with another ID, or typed as a plain Ed25519 (0x01) key, is refused.
        assert!(
            WitnessKey::parse("remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
                .is_err()
        );
        assert!(
            WitnessKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err()
        );
    }

    /// Timestamps of published cosignatures: transparency-dev/formats' TestCoSigV1Timestamp
    /// (1727964367) and the example line of c2sp.org/tlog-cosignature (whose message shows
    /// `time 1679315147`).
    #[test]
    fn published_cosignatures_carry_their_timestamps() {
        assert_eq!(
            cosignature_time("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==").unwrap(),
            1727964367
        );
        assert_eq!(
            cosignature_time("jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==").unwrap(),
            1679315147
        );
        // A plain Ed25519 note signature (68 bytes) is not a cosignature.
        assert!(cosignature_time(
            "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
        )
        .is_err());
    }

    /// A fixed vector: the RFC 8032 test-1 key cosigning the spec's example checkpoint at the
    /// spec's example time. The line was computed by Python `cryptography` from the spec's
    /// message construction (tests/testsuite/witness_check.py checks live ones with tlog-scales),
    /// not by this code.
    #[test]
    fn a_known_cosignature_verifies() {
        let (_, wk) = witness();
        assert_eq!(
            wk.encode(),
            "witness.example/w1+eb762cc2+BNdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        );
        let line = "\u{2014} witness.example/w1 63YswgAAAABkGFDL+TPmh4BYuAjsYRoqMJCWb/gWJaeRF/kmm5tlCr9sJ57DLErur7K0yDXc2ArN+TIuotuB/HbuL3AJsp3bv/aNCQ==\n";
        let note = format!("{BODY}\n{line}");
        assert_eq!(
            wk.verify_cosignature(&note).unwrap(),
            CosignedAt { time: 1679315147 }
        );
    }

    #[test]
    fn a_cosignature_binds_checkpoint_time_and_key() {
        let (sk, wk) = witness();
        let line = cosign(&sk, &wk, BODY, 1_700_000_000);
        let archive_line = "\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let note = format!("{BODY}\n{archive_line}{line}");
        assert_eq!(wk.verify_cosignature(&note).unwrap().time, 1_700_000_000);
        // Another tree size.
        let other = note.replacen("20852163", "20852164", 1);
        assert!(wk.verify_cosignature(&other).is_err());
        // A changed timestamp (the signature commits to it).
        let blob = line.trim_end().rsplit(' ').next().unwrap();
        let mut raw = B64.decode(blob).unwrap();
        raw[11] ^= 1;
        let moved = format!("{BODY}\n\u{2014} {} {}\n", wk.name, B64.encode(&raw));
        assert!(wk.verify_cosignature(&moved).is_err());
        // Another witness's key under the same name and ID is not this witness.
        let other_sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let forged = cosign(&other_sk, &wk, BODY, 1_700_000_000);
        assert!(wk.verify_cosignature(&format!("{BODY}\n{forged}")).is_err());
        // No line by this witness at all.
        assert!(wk.verify_cosignature(&format!("{BODY}\n{archive_line}")).is_err());
    }
}
