//! WORM conformance of the object store itself: our guarantee that nobody can delete or
//! shorten an offloaded segment before its retain-until date is the store's, so it is tested
//! like our own code, with the client the product uses.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};

use super::weed::{runtime, Weed};

/// The HTTP status and S3 error code of a failed call.
fn refusal<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (Option<u16>, String) {
    (
        e.raw_response().map(|r| r.status().as_u16()),
        e.as_service_error()
            .and_then(|s| s.code())
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn a_compliance_locked_version_can_be_neither_deleted_nor_shortened_and_survives_overwrites() {
    let weed = Weed::start();
    weed.create_locked_bucket("worm");
    let client = weed.client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let until = now + 86_400;
    let locked: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    runtime().block_on(async {
        let put = client
            .put_object()
            .bucket("worm")
            .key("seg")
            .body(ByteStream::from(locked.clone()))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(until))
            .send()
            .await
            .unwrap();
        let version = put
            .version_id()
            .expect("a versioned bucket names the version")
            .to_string();

        let delete = client
            .delete_object()
            .bucket("worm")
            .key("seg")
            .version_id(&version)
            .send()
            .await
            .expect_err("deleting a COMPLIANCE-locked version must fail");
        assert_eq!(refusal(&delete), (Some(403), "AccessDenied".to_string()));

        let shorten = client
            .put_object_retention()
            .bucket("worm")
            .key("seg")
            .version_id(&version)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(DateTime::from_secs(until - 3600))
                    .build(),
            )
            .send()
            .await
            .expect_err("shortening COMPLIANCE retention must fail");
        assert_eq!(refusal(&shorten), (Some(403), "AccessDenied".to_string()));

        // An overwrite is a new version; the locked one still reads back byte for byte.
        let over = client
            .put_object()
            .bucket("worm")
            .key("seg")
            .body(ByteStream::from_static(b"something else"))
            .send()
            .await
            .unwrap();
        assert_ne!(over.version_id(), Some(version.as_str()));
        let head = client
            .head_object()
            .bucket("worm")
            .key("seg")
            .version_id(&version)
            .send()
            .await
            .unwrap();
        assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
        assert_eq!(
            head.object_lock_retain_until_date().map(DateTime::secs),
            Some(until)
        );
        let got = client
            .get_object()
            .bucket("worm")
            .key("seg")
            .version_id(&version)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(got.as_ref() == locked.as_slice(), "the locked version changed");
    });
}
