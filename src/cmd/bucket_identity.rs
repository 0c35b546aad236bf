//! The store's identity object in the bucket, `<prefix><origin>/store.json`: its origin and
//! public key, nothing secret. The offload thread writes it once, locked like the segments,
//! before the first segment goes up, so the bucket describes itself; `restore --from-s3`
//! reads it to check that the signing key it was given is this store's.

use anyhow::Context;
use archive_s3::{Bucket, Put, S3Settings};

/// The format of the identity object.
const FORMAT: u32 = 1;
/// The largest identity object read.
const MAX_BYTES: u64 = 64 << 10;

/// What the identity object says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketIdentity {
    /// Format version of this object.
    pub format: u32,
    /// The log's origin (checkpoint origin line, key name).
    pub origin: String,
    /// The log's public key (`mailvault key show`).
    pub public_key: String,
}

impl BucketIdentity {
    pub fn new(origin: &str, public_key: &str) -> BucketIdentity {
        BucketIdentity {
            format: FORMAT,
            origin: origin.to_string(),
            public_key: public_key.to_string(),
        }
    }
}

/// Reads the identity object of `origin`, if the bucket has one.
pub async fn read(
    bucket: &Bucket,
    settings: &S3Settings,
    origin: &str,
) -> anyhow::Result<Option<BucketIdentity>> {
    let key = settings.identity_key(origin);
    let Some(bytes) = bucket.get_small(&key, MAX_BYTES).await? else {
        return Ok(None);
    };
    let identity: BucketIdentity =
        serde_json::from_slice(&bytes).with_context(|| format!("{key}: not a mailvault identity object"))?;
    if identity.format != FORMAT {
        anyhow::bail!(
            "{key}: identity object format {} is not supported",
            identity.format
        );
    }
    Ok(Some(identity))
}

/// Writes the identity object unless the bucket has it; an object there that names another
/// store or key is an error (nothing is overwritten).
pub async fn publish(
    bucket: &Bucket,
    settings: &S3Settings,
    identity: &BucketIdentity,
    retain_until: i64,
) -> anyhow::Result<()> {
    let key = settings.identity_key(&identity.origin);
    if let Some(found) = read(bucket, settings, &identity.origin).await? {
        return same(&key, &found, identity);
    }
    let mut json = serde_json::to_vec_pretty(identity)?;
    json.push(b'\n');
    match bucket.put_bytes(&key, json, retain_until).await? {
        Put::Created { .. } => {
            tracing::info!(%key, "store identity (origin, public key) written to the bucket");
            Ok(())
        }
        Put::Exists => match read(bucket, settings, &identity.origin).await? {
            Some(found) => same(&key, &found, identity),
            None => anyhow::bail!("{key}: the store said it exists, but it cannot be read"),
        },
    }
}

fn same(key: &str, found: &BucketIdentity, ours: &BucketIdentity) -> anyhow::Result<()> {
    if found != ours {
        anyhow::bail!(
            "{key} names origin {} and public key {}, this store is {} with {}: not overwritten",
            found.origin,
            found.public_key,
            ours.origin,
            ours.public_key
        );
    }
    Ok(())
}
