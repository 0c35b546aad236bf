//! Reading a store back out of the bucket (`mailvault restore --from-s3`): every object
//! version under a prefix, page by bounded page; one version streamed into a file and hashed
//! on the way, never held whole; small objects (the store's identity) read and written whole.

use aws_smithy_types::DateTime;

use super::{read_bounded, request_error, sha256_b64, status_of, Bucket, Put};
use crate::{S3Error, S3Result};

/// Entries asked for per listing page (S3's own maximum).
const PAGE: i32 = 1000;

/// One version of an object, as a listing names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object key.
    pub key: String,
    /// The version id (empty if the store names none).
    pub version_id: String,
    /// Bytes.
    pub size: u64,
    /// When this version was written, seconds since the epoch (0 if the store did not say).
    pub last_modified: i64,
}

/// What a listing of a prefix found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every object version, in the store's order (by key; newest version first).
    pub versions: Vec<ObjectVersion>,
    /// Delete markers (they hide nothing from a reader that asks for versions).
    pub delete_markers: u64,
}

impl Bucket {
    /// Every object version whose key starts with `prefix`, at most `max_entries` of them
    /// (versions and delete markers): more is an error, as is a store whose page markers do
    /// not move on.
    pub async fn list_versions(&self, prefix: &str, max_entries: usize) -> S3Result<Listing> {
        let mut listing = Listing::default();
        let mut marker: Option<(String, String)> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.name)
                .prefix(prefix)
                .max_keys(PAGE)
                .set_key_marker(marker.as_ref().map(|m| m.0.clone()))
                .set_version_id_marker(marker.as_ref().map(|m| m.1.clone()).filter(|v| !v.is_empty()))
                .send()
                .await
                .map_err(|e| request_error("ListObjectVersions", prefix, e))?;
            for v in page.versions() {
                listing.versions.push(ObjectVersion {
                    key: v.key().unwrap_or_default().to_string(),
                    version_id: v.version_id().unwrap_or_default().to_string(),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    last_modified: v.last_modified().map_or(0, DateTime::secs),
                });
            }
            listing.delete_markers += page.delete_markers().len() as u64;
            let entries = listing.versions.len() + listing.delete_markers as usize;
            if entries > max_entries {
                return Err(too_many(
                    prefix,
                    format!("more than {max_entries} object versions"),
                ));
            }
            if page.is_truncated() != Some(true) {
                return Ok(listing);
            }
            let next = (
                page.next_key_marker().unwrap_or_default().to_string(),
                page.next_version_id_marker().unwrap_or_default().to_string(),
            );
            if next.0.is_empty() || marker.as_ref() == Some(&next) {
                return Err(too_many(
                    prefix,
                    "the listing is truncated but its next page marker does not move on".into(),
                ));
            }
            marker = Some(next);
        }
    }

    /// Streams `key` at `version` into `to`, hashing it on the way; returns its length and
    /// BLAKE3. A body that ends early (a dropped connection) is an error, as is one of other
    /// than the length the store announced.
    pub async fn download(
        &self,
        key: &str,
        version: &str,
        to: &mut impl std::io::Write,
    ) -> S3Result<(u64, [u8; 32])> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(Some(version.to_string()).filter(|v| !v.is_empty()))
            .send()
            .await
            .map_err(|e| request_error("GET", key, e))?;
        let announced = out.content_length().map(|n| n.max(0) as u64);
        let mut body = out.body;
        let mut hasher = blake3::Hasher::new();
        let mut len = 0u64;
        let body_error = |message: String| S3Error::Request {
            op: "GET",
            key: key.to_string(),
            message,
            status: None,
        };
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| body_error(format!("reading the body after {len} bytes: {e}")))?
        {
            len += chunk.len() as u64;
            hasher.update(&chunk);
            to.write_all(&chunk)
                .map_err(|e| body_error(format!("writing what was downloaded: {e}")))?;
        }
        if announced.is_some_and(|n| n != len) {
            return Err(body_error(format!(
                "the body ended after {len} of {} bytes (truncated)",
                announced.unwrap_or_default()
            )));
        }
        Ok((len, hasher.finalize().into()))
    }

    /// The bytes of a small object (`key`'s newest version); `None` if there is none, an
    /// error if it is larger than `max` bytes.
    pub async fn get_small(&self, key: &str, max: u64) -> S3Result<Option<Vec<u8>>> {
        let answer = self.client.get_object().bucket(&self.name).key(key).send().await;
        let out = match answer {
            Ok(out) => out,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(request_error("GET", key, e)),
        };
        let too_long = format!("larger than the {max} bytes expected");
        read_bounded(out.body, key, max, &too_long).await.map(Some)
    }

    /// Puts `bytes` at `key`, locked in COMPLIANCE mode until `retain_until`, create-only
    /// where the store supports it (as `put_file` does for segments).
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>, retain_until: i64) -> S3Result<Put> {
        let sha256 = sha256_b64(&bytes);
        self.put_single(key, bytes, sha256, DateTime::from_secs(retain_until))
            .await
    }
}

fn too_many(prefix: &str, message: String) -> S3Error {
    S3Error::Request {
        op: "ListObjectVersions",
        key: prefix.to_string(),
        message,
        status: None,
    }
}
