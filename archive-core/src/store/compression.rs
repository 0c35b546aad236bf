//! How message payloads are compressed: zstd per message (so any message reads on its own),
//! with a dictionary trained on the store's own mail once enough of it has arrived. Mail is
//! mostly small messages that share headers and boilerplate; a dictionary turns that shared
//! text into savings that per-message compression cannot see (on the SpamAssassin corpus
//! 0.41 → 0.31 of the raw size). Dictionaries are records in the log, so the log stays
//! self-contained and `verify` needs nothing else.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, RwLock};

use crate::log::reader::Dictionary;
use crate::log::record::Codec;
use crate::store::StoreConfig;
use crate::{Error, Result};

/// Bytes of each message kept as a training sample (headers and the start of the body carry
/// the shared text).
const SAMPLE_BYTES: usize = 16 << 10;
/// Samples kept for training (the most recent ones).
const MAX_SAMPLES: usize = 1024;

/// A compression context and what it was set up for: (level, dictionary hash, context).
type CachedCompressor = (i32, Option<[u8; 32]>, zstd::bulk::Compressor<'static>);

thread_local! {
    /// This thread's compressor. Contexts are reused because setting one up costs more than
    /// compressing a typical message.
    static COMPRESSOR: RefCell<Option<CachedCompressor>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Samples {
    recent: VecDeque<Vec<u8>>,
    /// Raw bytes appended since the active dictionary (or since open, without one).
    raw_since_dictionary: u64,
    /// Samples seen since the last training attempt.
    since_attempt: usize,
}

/// The compression policy and state of a store.
pub(crate) struct Compression {
    level: i32,
    dictionary_size: usize,
    train_after: usize,
    refresh_bytes: u64,
    active: RwLock<Option<(u64, Dictionary)>>,
    samples: Mutex<Samples>,
    training: AtomicBool,
    /// Signalled when a training round ends (the first dictionary is worth waiting for).
    trained: (Mutex<()>, Condvar),
}

impl Compression {
    pub fn new(config: &StoreConfig, active: Option<(u64, Dictionary)>) -> Compression {
        Compression {
            level: config.zstd_level,
            dictionary_size: config.dictionary_size,
            train_after: config.dictionary_samples.max(1),
            refresh_bytes: config.dictionary_refresh_bytes,
            active: RwLock::new(active),
            samples: Mutex::new(Samples::default()),
            training: AtomicBool::new(false),
            trained: (Mutex::new(()), Condvar::new()),
        }
    }

    /// While the store's first dictionary is being trained, waits for it: messages compressed
    /// meanwhile would miss it for good, and training takes a fraction of a second, once.
    fn await_first_dictionary(&self) {
        let (lock, cvar) = &self.trained;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.training.load(Ordering::Acquire)
            && self.active.read().unwrap_or_else(|p| p.into_inner()).is_none()
        {
            guard = cvar.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn training_done(&self) {
        let (lock, cvar) = &self.trained;
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.training.store(false, Ordering::Release);
        cvar.notify_all();
    }

    /// Compresses a message; keeps it raw when zstd does not make it smaller.
    pub fn compress(&self, raw: &[u8]) -> Result<(Codec, Vec<u8>)> {
        self.await_first_dictionary();
        let active = self.active.read().unwrap_or_else(|p| p.into_inner()).clone();
        let zstd_err = |e: std::io::Error| Error::System(format!("zstd: {e}"));
        COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let want = active.as_ref().map(|(_, d)| d.hash);
            if slot
                .as_ref()
                .is_none_or(|(l, h, _)| *l != self.level || *h != want)
            {
                let c = match &active {
                    Some((_, d)) => zstd::bulk::Compressor::with_dictionary(self.level, &d.bytes),
                    None => zstd::bulk::Compressor::new(self.level),
                }
                .map_err(zstd_err)?;
                *slot = Some((self.level, want, c));
            }
            let Some((_, _, c)) = slot.as_mut() else {
                return Err(Error::Internal("zstd compressor unavailable".into()));
            };
            let frame = c.compress(raw).map_err(zstd_err)?;
            let (codec, payload) = match &active {
                Some((seq, _)) => {
                    let mut p = Vec::with_capacity(8 + frame.len());
                    p.extend_from_slice(&seq.to_be_bytes());
                    p.extend_from_slice(&frame);
                    (Codec::ZstdDictionary, p)
                }
                None => (Codec::Zstd, frame),
            };
            Ok(if payload.len() < raw.len() {
                (codec, payload)
            } else {
                (Codec::Raw, raw.to_vec())
            })
        })
    }

    /// Notes an appended message as a training sample; returns the samples to train a
    /// dictionary from when one is due (to exactly one caller at a time).
    pub fn observe(&self, raw: &[u8]) -> Option<Vec<Vec<u8>>> {
        if self.dictionary_size == 0 {
            return None;
        }
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.raw_since_dictionary += raw.len() as u64;
        s.since_attempt += 1;
        if s.recent.len() == MAX_SAMPLES {
            s.recent.pop_front();
        }
        s.recent.push_back(raw[..raw.len().min(SAMPLE_BYTES)].to_vec());
        let has_dictionary = self.active.read().unwrap_or_else(|p| p.into_inner()).is_some();
        let due = s.since_attempt >= self.train_after
            && (!has_dictionary || s.raw_since_dictionary >= self.refresh_bytes);
        if !due || self.training.swap(true, Ordering::AcqRel) {
            return None;
        }
        s.since_attempt = 0;
        Some(s.recent.iter().cloned().collect())
    }

    /// Trains a dictionary from samples (outside every lock: it takes a while).
    pub fn train(&self, samples: &[Vec<u8>]) -> Option<Vec<u8>> {
        let dict = zstd::dict::from_samples(samples, self.dictionary_size).ok();
        if dict.is_none() {
            // Too little or too uniform data: try again after more samples.
            self.training_done();
        }
        dict
    }

    /// Makes a dictionary (already appended as record `seq`) the one new messages use.
    pub fn activate(&self, seq: u64, dictionary: Dictionary) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Some((seq, dictionary));
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .raw_since_dictionary = 0;
        self.training_done();
    }

    /// Gives up on a training round whose dictionary could not be stored.
    pub fn abandon(&self) {
        self.training_done();
    }
}
