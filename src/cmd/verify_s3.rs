//! `mailvault verify --s3`: the bucket's copy of every offloaded segment, checked against its
//! receipt in the log (which `verify` has already checked against the local segment file):
//! the recorded object version exists, streams to the same length and BLAKE3, and is locked
//! in COMPLIANCE mode at least until the recorded date. One line per segment.

use std::collections::HashMap;

use anyhow::Context;
use archive_core::log::record::OffloadReceipt;
use archive_s3::{Bucket, S3Settings};

/// Checks every receipt; prints a line per segment; says whether all were fine.
pub fn check_bucket(settings: &S3Settings, offloads: &[(u64, OffloadReceipt)]) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the S3 client's runtime")?;
    // A receipt names its bucket; the configuration gives the endpoint and credentials.
    let mut buckets: HashMap<String, Bucket> = HashMap::new();
    let mut bad = 0usize;
    for (seq, receipt) in offloads {
        if !buckets.contains_key(&receipt.bucket) {
            let mut s = settings.clone();
            s.bucket = receipt.bucket.clone();
            buckets.insert(receipt.bucket.clone(), Bucket::connect(&s)?);
        }
        let bucket = &buckets[&receipt.bucket];
        let place = format!(
            "segment {} (receipt seq {seq}): s3://{}/{} version {}",
            receipt.segment, receipt.bucket, receipt.key, receipt.version_id
        );
        match runtime.block_on(check_one(bucket, receipt)) {
            Ok(Ok(summary)) => println!("S3 OK: {place}: {summary}"),
            Ok(Err(problem)) => {
                bad += 1;
                println!("S3 TAMPERED: {place}: {problem}");
            }
            Err(e) => {
                bad += 1;
                println!("S3 UNREADABLE: {place}: {e}");
            }
        }
    }
    if bad == 0 {
        println!("S3: {} offloaded segments verified in the bucket", offloads.len());
    } else {
        println!(
            "S3: {bad} of {} offloaded segments do not verify in the bucket",
            offloads.len()
        );
    }
    Ok(bad == 0)
}

/// `Ok(Ok(summary))` fine, `Ok(Err(problem))` the object is not what the receipt says.
async fn check_one(bucket: &Bucket, r: &OffloadReceipt) -> archive_s3::S3Result<Result<String, String>> {
    let version = Some(r.version_id.as_str()).filter(|v| !v.is_empty());
    let Some(head) = bucket.head(&r.key, version).await? else {
        return Ok(Err("the object version is missing from the bucket".into()));
    };
    if head.lock_mode.as_deref() != Some("COMPLIANCE") {
        return Ok(Err(format!(
            "not locked in COMPLIANCE mode (lock mode {})",
            head.lock_mode.as_deref().unwrap_or("none")
        )));
    }
    let until = head.retain_until.unwrap_or(i64::MIN);
    if until < r.retain_until {
        return Ok(Err(format!(
            "retained only until {}, the receipt says {}",
            date(until),
            date(r.retain_until)
        )));
    }
    let Some((len, hash)) = bucket.blake3_of(&r.key, &r.version_id).await? else {
        return Ok(Err("the object version is missing from the bucket".into()));
    };
    if len != r.segment_len || hash != r.segment_hash {
        return Ok(Err(format!(
            "its bytes differ from the segment ({len} bytes, blake3 {}; the segment has {} bytes, blake3 {})",
            super::hex(&hash),
            r.segment_len,
            super::hex(&r.segment_hash)
        )));
    }
    Ok(Ok(format!(
        "{len} bytes, blake3 equal, locked (COMPLIANCE) until {}",
        date(until)
    )))
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}
