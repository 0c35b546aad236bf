//! `[storage.s3] cache_size`: once the local copies of offloaded segments hold more than
//! that, the oldest are replaced by stubs (`archive_core::log::evicted`). Not a delete: the
//! bytes stay in WORM storage, named by a receipt that is in the log under a signed
//! checkpoint, and every reader finds them through the stub. A segment is evicted only when
//!
//! - it is sealed and neither the newest nor the one before it (the active segment, and the
//!   sealed one recovery may read at open, stay local);
//! - its receipt is durable in the log (`append_offload` returns once a checkpoint covers it;
//!   receipts found at start are covered, recovery cut any that were not);
//! - HEAD finds the receipt's object version in the bucket, of the segment's length, locked
//!   in COMPLIANCE mode at least until the receipt's date;
//! - the file still is the one uploaded (its BLAKE3 equals the receipt's), read frame by
//!   frame to build the stub.

use anyhow::Context;
use archive_core::log::evicted::{list_log, EvictedSegment, SegmentSource};
use archive_core::log::record::{LeafBody, OffloadReceipt};
use archive_core::log::segment::segment_file_name;

use super::{Offloader, Receipted, EVICTED};

/// Segments at the log's end that always stay local.
const KEEP_NEWEST: usize = 2;

impl Offloader {
    /// Evicts the oldest offloaded segments until the local ones fit `cache_size`.
    pub(super) fn evict(&mut self) -> anyhow::Result<()> {
        let Some(budget) = self.cache_size else {
            return Ok(());
        };
        let sources = list_log(&self.store.layout().log_dir)?;
        let evictable = sources.len().saturating_sub(KEEP_NEWEST);
        let receipted = self
            .receipted
            .as_ref()
            .map(|r| r.keys().copied().collect::<Vec<_>>());
        let receipted = receipted.unwrap_or_default();
        let mut local: Vec<(usize, u64, std::path::PathBuf, u64)> = Vec::new();
        for (i, (first, source)) in sources.iter().enumerate() {
            if let SegmentSource::Local(path) = source {
                if receipted.binary_search(first).is_ok() {
                    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    local.push((i, *first, path.clone(), len));
                }
            }
        }
        let mut held: u64 = local.iter().map(|l| l.3).sum();
        for (i, first, path, len) in local {
            if held <= budget || self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if i >= evictable {
                continue;
            }
            self.evict_one(first, &path)
                .with_context(|| format!("evicting segment {}", segment_file_name(first)))?;
            held -= len;
        }
        Ok(())
    }

    fn evict_one(&mut self, first: u64, path: &std::path::Path) -> anyhow::Result<()> {
        let (seq, receipt) = self.receipt_of(first)?;
        if receipt.bucket != self.bucket.name() {
            // A receipt for another bucket (the configuration changed): not checked here.
            tracing::warn!(segment = first, bucket = %receipt.bucket, "not evicted: its receipt names another bucket than the configured one");
            return Ok(());
        }
        let version = Some(receipt.version_id.as_str()).filter(|v| !v.is_empty());
        let info = self
            .runtime
            .block_on(self.bucket.head(&receipt.key, version))?
            .with_context(|| {
                format!(
                    "{}: the recorded object version is not in the bucket",
                    receipt.key
                )
            })?;
        if info.size != receipt.segment_len {
            anyhow::bail!(
                "{}: the bucket holds {} bytes, the receipt says {}",
                receipt.key,
                info.size,
                receipt.segment_len
            );
        }
        super::check_lock(&info, receipt.retain_until).with_context(|| receipt.key.clone())?;
        let stub = EvictedSegment::describe(path, seq, &receipt)?;
        self.store.evict_segment(&stub)?;
        metrics::counter!(EVICTED).increment(1);
        self.report.evicted_since_start += 1;
        tracing::info!(
            segment = first,
            key = %receipt.key,
            version = %receipt.version_id,
            records = stub.frames.len(),
            "local copy of an offloaded segment evicted (cache_size); a stub names where it is"
        );
        Ok(())
    }

    /// The receipt of segment `first` and its seq (read from the log if only its seq is known).
    fn receipt_of(&mut self, first: u64) -> anyhow::Result<(u64, OffloadReceipt)> {
        let known = self
            .receipted
            .as_ref()
            .and_then(|r| r.get(&first))
            .context("no receipt")?;
        if let Some(r) = &known.receipt {
            return Ok((known.seq, r.clone()));
        }
        let seq = known.seq;
        let record = self.store.read_record_unscoped(seq)?;
        let LeafBody::Offload(receipt) = record.leaf.body else {
            anyhow::bail!("record {seq} is not the offload receipt its stub says it is");
        };
        if receipt.segment != first {
            anyhow::bail!("receipt {seq} names segment {}, not {first}", receipt.segment);
        }
        if let Some(r) = self.receipted.as_mut() {
            r.insert(
                first,
                Receipted {
                    seq,
                    receipt: Some(receipt.clone()),
                },
            );
        }
        Ok((seq, receipt))
    }
}
