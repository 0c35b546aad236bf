//! Where things live in a store directory, and the store's identity file.

use std::path::{Path, PathBuf};

use crate::log::checkpoint::{validate_key_name, VerifierKey};
use crate::{Error, IoContext, Result};

/// Format version of `store.json`.
const STORE_FORMAT: u32 = 1;

/// Paths inside a store directory.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The store directory.
    pub dir: PathBuf,
    /// Segment files (the source of truth).
    pub log_dir: PathBuf,
    /// Persisted Merkle tree hashes (derived).
    pub tree: PathBuf,
    /// redb key-value index (derived).
    pub kv_index: PathBuf,
    /// Write lock: one writer process per store.
    pub lock: PathBuf,
    /// Store identity: format version and origin.
    pub identity: PathBuf,
    /// The log's public key, as `mailvault key show` prints it.
    pub public_key: PathBuf,
    /// Default location of the signing key.
    pub default_key: PathBuf,
    /// Bytes recovery cut off the log (never acknowledged), kept one file per cut.
    pub quarantine: PathBuf,
    /// The outcome of the last `mailvault verify` (for the server's metrics).
    pub last_verify: PathBuf,
    /// Audit events of processes that could not append to the log while a server owned it,
    /// one file each, until the server takes them in (`audit::spool`).
    pub audit_spool: PathBuf,
    /// Frames fetched from evicted segments (`log::remote::RangeCache`).
    pub range_cache: PathBuf,
}

impl Layout {
    /// The layout of store directory `dir`.
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
            log_dir: dir.join("log"),
            tree: dir.join("tree.hashes"),
            kv_index: dir.join("index.redb"),
            lock: dir.join("LOCK"),
            identity: dir.join("store.json"),
            public_key: dir.join("signing.pub"),
            default_key: dir.join("signing.key"),
            quarantine: dir.join("quarantine"),
            last_verify: dir.join("verify-last.json"),
            audit_spool: dir.join("audit-spool"),
            range_cache: dir.join("cache").join("ranges"),
        }
    }

    /// Whether a store exists here.
    pub fn exists(&self) -> bool {
        self.identity.exists()
    }

    /// Reads the store identity.
    pub fn identity(&self) -> Result<StoreIdentity> {
        let text = match std::fs::read_to_string(&self.identity) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Format {
                    path: self.dir.clone(),
                    reason: "no mailvault store here (`mailvault init` creates one)".into(),
                })
            }
            Err(e) => return Err(Error::io(&self.identity, e)),
        };
        let id: StoreIdentity = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: self.identity.clone(),
            reason: format!("unreadable store identity: {e}"),
        })?;
        if id.format != STORE_FORMAT {
            return Err(Error::Format {
                path: self.identity.clone(),
                reason: format!(
                    "store format {} is not supported by this build (expects {STORE_FORMAT})",
                    id.format
                ),
            });
        }
        validate_key_name(&id.origin)?;
        Ok(id)
    }

    /// Replaces the identity file atomically and durably.
    pub fn write_identity(&self, identity: &StoreIdentity) -> Result<()> {
        let tmp = self.dir.join("store.json.tmp");
        let json = serde_json::to_string_pretty(identity)
            .map_err(|e| Error::Internal(format!("store identity: {e}")))?;
        std::fs::write(&tmp, json + "\n").at(&tmp)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        std::fs::rename(&tmp, &self.identity).at(&self.identity)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .at(&self.dir)
    }

    /// The quarantine files (what recovery cut off the log), oldest first, with their sizes.
    pub fn quarantined(&self) -> Result<Vec<(PathBuf, u64)>> {
        let entries = match std::fs::read_dir(&self.quarantine) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.quarantine, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.at(&self.quarantine)?;
            let len = entry.metadata().at(&entry.path())?.len();
            out.push((entry.path(), len));
        }
        out.sort();
        Ok(out)
    }

    /// The public key stored with the log.
    pub fn verifier_key(&self) -> Result<VerifierKey> {
        let text = std::fs::read_to_string(&self.public_key).at(&self.public_key)?;
        Ok(VerifierKey::parse(&text)?)
    }
}

/// The contents of `store.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoreIdentity {
    /// Format version.
    pub format: u32,
    /// The log's origin: checkpoint first line and key name.
    pub origin: String,
    /// Every acknowledgement waits for a checkpoint over its record (written in the same
    /// fsync), so records after the newest checkpoint were never acknowledged and recovery
    /// quarantines them. False in stores written before that rule: their first open keeps an
    /// unsigned tail (it may have been acknowledged), then sets this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed_acknowledgements: bool,
}

impl StoreIdentity {
    /// A fresh identity with a random origin `mailvault.invalid/<128-bit hex>`.
    pub fn generate() -> Result<StoreIdentity> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| Error::System(format!("no system randomness: {e}")))?;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Ok(StoreIdentity {
            format: STORE_FORMAT,
            origin: format!("mailvault.invalid/{hex}"),
            signed_acknowledgements: true,
        })
    }
}
