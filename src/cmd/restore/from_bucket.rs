//! The segments a restore takes from the bucket: the listing of the store's `log/` prefix,
//! one version chosen per segment (the oldest one locked in COMPLIANCE mode: what the offload
//! thread wrote first, which nobody can have replaced), and their downloads, streamed to files.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use archive_core::log::segment::segment_file_name;
use archive_s3::{Bucket, ObjectVersion};

/// The most object versions a restore lists (about 640 TB of 64 MiB segments).
const MAX_VERSIONS: usize = 10_000_000;

/// A segment in the bucket, the version restore takes.
#[derive(Clone, Debug)]
pub struct BucketSegment {
    pub first: u64,
    pub key: String,
    pub version_id: String,
    pub size: u64,
    /// Other versions under the same key (not taken; said in the output).
    pub others: usize,
}

/// Lists `prefix` (the store's `log/`) and picks one version per segment. An object whose
/// name is not a segment file's, or a segment none of whose versions is locked in COMPLIANCE
/// mode, is foreign to the store: an error naming it.
pub async fn segments_in(bucket: &Bucket, prefix: &str) -> anyhow::Result<Vec<BucketSegment>> {
    let listing = bucket.list_versions(prefix, MAX_VERSIONS).await?;
    let mut by_key: BTreeMap<u64, Vec<ObjectVersion>> = BTreeMap::new();
    for version in listing.versions {
        let name = version.key.strip_prefix(prefix).unwrap_or(&version.key);
        let first = segment_number(name).with_context(|| {
            format!(
                "s3://{}/{}: a foreign object among the store's segments (not a segment file name); \
                 refusing to restore from a prefix something else wrote to",
                bucket.name(),
                version.key
            )
        })?;
        by_key.entry(first).or_default().push(version);
    }
    let mut segments = Vec::with_capacity(by_key.len());
    for (first, mut versions) in by_key {
        // Oldest first: the first upload is the offload thread's; a later version under the
        // same key was put there by someone else (the thread never writes a key twice).
        versions.sort_by_key(|v| v.last_modified);
        let mut chosen = None;
        for v in &versions {
            let head = bucket
                .head(
                    &v.key,
                    Some(&v.version_id).filter(|v| !v.is_empty()).map(String::as_str),
                )
                .await?;
            if head.is_some_and(|h| h.lock_mode.as_deref() == Some("COMPLIANCE")) {
                chosen = Some(v.clone());
                break;
            }
        }
        let Some(v) = chosen else {
            anyhow::bail!(
                "segment {} (s3://{}/{}): no version of it is locked in COMPLIANCE mode, so the offload \
                 thread did not write it: a foreign or tampered object; refusing to restore from it",
                segment_file_name(first),
                bucket.name(),
                versions[0].key
            );
        };
        segments.push(BucketSegment {
            first,
            key: v.key,
            version_id: v.version_id,
            size: v.size,
            others: versions.len() - 1,
        });
    }
    Ok(segments)
}

/// The first seq a segment file name states (`00000000000000000001.seg`).
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")
        .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

/// Downloads `segment` into `log_dir` (streamed through a `.part` file, renamed when whole,
/// mode 0400 like every sealed segment, fsynced); returns its BLAKE3.
pub async fn download(bucket: &Bucket, segment: &BucketSegment, log_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let name = segment_file_name(segment.first);
    let part = log_dir.join(format!("{name}.part"));
    let place = || {
        format!(
            "segment {name} (s3://{}/{} version {})",
            bucket.name(),
            segment.key,
            segment.version_id
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| part.display().to_string())?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    let (len, hash) = bucket
        .download(&segment.key, &segment.version_id, &mut writer)
        .await
        .with_context(place)?;
    writer.flush().with_context(|| part.display().to_string())?;
    drop(writer);
    if len != segment.size {
        anyhow::bail!(
            "{}: {len} bytes downloaded, the listing says {} (truncated download)",
            place(),
            segment.size
        );
    }
    file.sync_all().with_context(|| part.display().to_string())?;
    let path = log_dir.join(&name);
    std::fs::set_permissions(&part, std::os::unix::fs::PermissionsExt::from_mode(0o400))
        .with_context(|| part.display().to_string())?;
    std::fs::rename(&part, &path).with_context(|| path.display().to_string())?;
    Ok(hash)
}
