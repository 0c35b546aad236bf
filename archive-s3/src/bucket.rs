//! The bucket: segment files put with a COMPLIANCE lock (one request, or a multipart upload of
//! bounded parts), HEAD with the lock's state, and a streamed GET that hashes an object
//! version without holding it. Every call is async (aws-sdk-s3); callers run them on a
//! runtime of their own, never on the front doors'.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
};
use aws_sdk_s3::Client;
use aws_smithy_types::DateTime;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::settings::{Credentials, S3Settings};
use crate::{S3Error, S3Result};

// Restore's reads: listing, streamed download, small objects (a child: it uses the client).
mod listing;
pub use listing::{Listing, ObjectVersion};

/// What HEAD says about an object version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bytes.
    pub size: u64,
    /// The ETag, quotes removed.
    pub etag: String,
    /// The version HEAD answered for (empty if the store names none).
    pub version_id: String,
    /// The SHA-256 checksum the store keeps (base64; `…-N` for a multipart object), if any.
    pub checksum_sha256: Option<String>,
    /// The Object Lock mode (`COMPLIANCE`, `GOVERNANCE`), if the version is locked.
    pub lock_mode: Option<String>,
    /// The retain-until date, seconds since the epoch, if locked.
    pub retain_until: Option<i64>,
}

/// What an upload created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// A new object version: its id, ETag and SHA-256 (base64) of the whole file.
    Created {
        version_id: String,
        etag: String,
        sha256: String,
    },
    /// The key was taken already (`If-None-Match: *` refused the write): nothing was written.
    Exists,
}

/// A bucket and the client that reaches it.
pub struct Bucket {
    client: Client,
    name: String,
    part_size: u64,
    /// Whether the store honours `If-None-Match: *` (cleared when it says it does not).
    conditional_writes: AtomicBool,
}

/// The S3 client for `settings` with `credentials`: rustls over ring, path-style as
/// configured, checksums only where an operation requires them (non-AWS stores reject the
/// SDK's default trailing checksums), the SDK's own retries off (the caller retries whole
/// uploads with its own backoff).
pub fn client(settings: &S3Settings, credentials: &Credentials) -> Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(120))
        .build();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(settings.region.clone()))
        .endpoint_url(settings.endpoint.trim_end_matches('/'))
        .force_path_style(settings.path_style)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            None,
            None,
            "mailvault",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

impl Bucket {
    /// The configured bucket (credentials are read now: a bad file fails the start).
    pub fn connect(settings: &S3Settings) -> S3Result<Bucket> {
        let credentials = settings.credentials()?;
        Ok(Bucket {
            client: client(settings, &credentials),
            name: settings.bucket.clone(),
            part_size: settings.part_mib << 20,
            conditional_writes: AtomicBool::new(true),
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// HEAD of `key` (its newest version, or `version`); `None` if there is no such object.
    pub async fn head(&self, key: &str, version: Option<&str>) -> S3Result<Option<ObjectInfo>> {
        let answer = self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(version.filter(|v| !v.is_empty()).map(str::to_string))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let head = match answer {
            Ok(h) => h,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(request_error("HEAD", key, e)),
        };
        Ok(Some(ObjectInfo {
            size: head.content_length().unwrap_or(0).max(0) as u64,
            etag: unquote(head.e_tag()),
            version_id: head.version_id().unwrap_or_default().to_string(),
            checksum_sha256: head.checksum_sha256().map(str::to_string),
            lock_mode: head.object_lock_mode().map(|m| m.as_str().to_string()),
            retain_until: head.object_lock_retain_until_date().map(DateTime::secs),
        }))
    }

    /// Uploads the file at `path` to `key`, locked in COMPLIANCE mode until `retain_until`
    /// (seconds since the epoch), create-only where the store supports `If-None-Match: *`.
    /// Memory stays within one part: a file above the part size goes up in parts.
    pub async fn put_file(&self, path: &Path, key: &str, retain_until: i64) -> S3Result<Put> {
        let io = |source| S3Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let until = DateTime::from_secs(retain_until);
        if len <= self.part_size {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).map_err(io)?;
            let sha256 = sha256_b64(&bytes);
            return self.put_single(key, bytes, sha256, until).await;
        }
        let whole = sha256_of_file(path)?;
        self.put_multipart(&mut file, path, len, key, until, whole).await
    }

    async fn put_single(&self, key: &str, bytes: Vec<u8>, sha256: String, until: DateTime) -> S3Result<Put> {
        loop {
            let conditional = self.conditional_writes.load(Ordering::Relaxed);
            let answer = self
                .client
                .put_object()
                .bucket(&self.name)
                .key(key)
                .content_length(bytes.len() as i64)
                .checksum_sha256(&sha256)
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(until)
                .set_if_none_match(conditional.then(|| "*".to_string()))
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await;
            let answer = answer.map(|out| put_created(out.version_id(), out.e_tag(), &sha256));
            if let Some(outcome) = self.conditional_outcome("PUT", key, answer, conditional) {
                return outcome;
            }
        }
    }

    async fn put_multipart(
        &self,
        file: &mut std::fs::File,
        path: &Path,
        len: u64,
        key: &str,
        until: DateTime,
        sha256: String,
    ) -> S3Result<Put> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .send()
            .await
            .map_err(|e| request_error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let outcome = self.upload_parts(file, path, len, key, &upload_id, sha256).await;
        if !matches!(outcome, Ok(Put::Created { .. })) {
            // Parts of an upload that did not complete are billed until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.name)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        outcome
    }

    async fn upload_parts(
        &self,
        file: &mut std::fs::File,
        path: &Path,
        len: u64,
        key: &str,
        upload_id: &str,
        sha256: String,
    ) -> S3Result<Put> {
        let io = |source| S3Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < len {
            let size = self.part_size.min(len - offset);
            let mut bytes = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
            file.read_exact(&mut bytes).map_err(io)?;
            let part_sha = sha256_b64(&bytes);
            let out = self
                .client
                .upload_part()
                .bucket(&self.name)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(size as i64)
                .checksum_sha256(&part_sha)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| request_error("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .checksum_sha256(part_sha)
                    .build(),
            );
            offset += size;
            number += 1;
        }
        let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        loop {
            let conditional = self.conditional_writes.load(Ordering::Relaxed);
            let answer = self
                .client
                .complete_multipart_upload()
                .bucket(&self.name)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed.clone())
                .set_if_none_match(conditional.then(|| "*".to_string()))
                .send()
                .await;
            let answer = answer.map(|out| put_created(out.version_id(), out.e_tag(), &sha256));
            if let Some(outcome) =
                self.conditional_outcome("CompleteMultipartUpload", key, answer, conditional)
            {
                return outcome;
            }
        }
    }

    /// What a create-only write's answer means: created, the key exists, an error — or
    /// `None` when the store does not do conditional writes and the write is to be sent again
    /// without the condition.
    fn conditional_outcome<E>(
        &self,
        op: &'static str,
        key: &str,
        answer: Result<Put, CallError<E>>,
        conditional: bool,
    ) -> Option<S3Result<Put>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match answer {
            Ok(put) => Some(Ok(put)),
            Err(e) => match self.conditional_refusal(&e, conditional) {
                Some(Refusal::Exists) => Some(Ok(Put::Exists)),
                Some(Refusal::Unsupported) => None,
                None => Some(Err(request_error(op, key, e))),
            },
        }
    }

    /// Whether a failed conditional write means "the key exists" (412), or "this store does
    /// not do conditional writes" (501, or a 400 naming the header): then writes go on
    /// without the condition (the caller HEADs before every upload, and a versioned bucket
    /// keeps the older version anyway).
    fn conditional_refusal<E: ProvideErrorMetadata>(
        &self,
        e: &CallError<E>,
        conditional: bool,
    ) -> Option<Refusal> {
        if !conditional {
            return None;
        }
        let status = status_of(e);
        let code = e.as_service_error().and_then(|s| s.code()).unwrap_or_default();
        if status == Some(412) || code == "PreconditionFailed" {
            return Some(Refusal::Exists);
        }
        let names_header = e
            .as_service_error()
            .and_then(|s| s.message())
            .is_some_and(|m| m.contains("If-None-Match"));
        if status == Some(501) || code == "NotImplemented" || (status == Some(400) && names_header) {
            tracing::warn!(bucket = %self.name, code, "the object store does not support If-None-Match; uploads go on without it (each is preceded by a HEAD)");
            self.conditional_writes.store(false, Ordering::Relaxed);
            return Some(Refusal::Unsupported);
        }
        None
    }

    /// Streams `key` (at `version`) and returns its length and BLAKE3, holding one network
    /// chunk at a time; `None` if there is no such object version.
    pub async fn blake3_of(&self, key: &str, version: &str) -> S3Result<Option<(u64, [u8; 32])>> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(Some(version.to_string()).filter(|v| !v.is_empty()))
            .send()
            .await;
        let mut body = match answer {
            Ok(out) => out.body,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(request_error("GET", key, e)),
        };
        let mut hasher = blake3::Hasher::new();
        let mut len = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| S3Error::Request {
            op: "GET",
            key: key.to_string(),
            message: format!("reading the body: {e}"),
            status: None,
        })? {
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((len, hasher.finalize().into())))
    }
}

impl Bucket {
    /// Bytes `[start, end)` of `key` at `version` (one range GET); `None` if there is no such
    /// object version. At most `end - start` bytes are taken from the answer.
    pub async fn get_range(
        &self,
        key: &str,
        version: &str,
        start: u64,
        end: u64,
    ) -> S3Result<Option<Vec<u8>>> {
        if end <= start {
            return Ok(Some(Vec::new()));
        }
        let answer = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(Some(version.to_string()).filter(|v| !v.is_empty()))
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await;
        let body = match answer {
            Ok(out) => out.body,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(request_error("GET", key, e)),
        };
        let want = end - start;
        let too_long = format!("the answer to a range of {want} bytes is longer");
        read_bounded(body, key, want, &too_long).await.map(Some)
    }

    /// The body of `key` at `version`, to be read chunk by chunk; `None` if there is no such
    /// object version.
    pub async fn get_stream(&self, key: &str, version: &str) -> S3Result<Option<ObjectStream>> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .set_version_id(Some(version.to_string()).filter(|v| !v.is_empty()))
            .send()
            .await;
        match answer {
            Ok(out) => Ok(Some(ObjectStream {
                body: out.body,
                key: key.to_string(),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(request_error("GET", key, e)),
        }
    }
}

/// An object's body being read ([`Bucket::get_stream`]).
pub struct ObjectStream {
    body: ByteStream,
    key: String,
}

impl ObjectStream {
    /// The next chunk of the body as the network brings it; `None` at its end.
    pub async fn next_chunk(&mut self) -> S3Result<Option<Vec<u8>>> {
        let chunk = self.body.try_next().await.map_err(|e| body_error(&self.key, e))?;
        Ok(chunk.map(|c| c.to_vec()))
    }
}

/// A GET's body read into memory, refused past `max` bytes (`too_long` says so), whatever
/// length the answer announced.
async fn read_bounded(mut body: ByteStream, key: &str, max: u64, too_long: &str) -> S3Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(max.min(64 << 20) as usize);
    while let Some(chunk) = body.try_next().await.map_err(|e| body_error(key, e))? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(S3Error::Request {
                op: "GET",
                key: key.to_string(),
                message: too_long.to_string(),
                status: None,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn body_error(key: &str, e: impl std::fmt::Display) -> S3Error {
    S3Error::Request {
        op: "GET",
        key: key.to_string(),
        message: format!("reading the body: {e}"),
        status: None,
    }
}

enum Refusal {
    Exists,
    Unsupported,
}

/// A failed call of the SDK.
type CallError<E> = SdkError<E, HttpResponse>;

/// The HTTP status of a failed call, where a response came back.
fn status_of<E>(e: &CallError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn request_error<E>(op: &'static str, key: &str, e: CallError<E>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status_of(&e);
    let message = match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        ),
        None => DisplayErrorContext(&e).to_string(),
    };
    S3Error::Request {
        op,
        key: key.to_string(),
        message,
        status,
    }
}

/// A created object as its write's answer names it.
fn put_created(version_id: Option<&str>, etag: Option<&str>, sha256: &str) -> Put {
    Put::Created {
        version_id: version_id.unwrap_or_default().to_string(),
        etag: unquote(etag),
        sha256: sha256.to_string(),
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// SHA-256 (base64) of a file, streamed.
pub fn sha256_of_file(path: &Path) -> S3Result<String> {
    let io = |source| S3Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

/// BLAKE3 and length of a local file, streamed.
pub fn blake3_of_file(path: &Path) -> S3Result<(u64, [u8; 32])> {
    let io = |source| S3Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((len, hasher.finalize().into()))
}
