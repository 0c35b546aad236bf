//! The message list of a view, shared. Every session that has a mailbox selected holds its
//! list, and a 100,000-message mailbox is 1.6 MB of it: sessions of the same view (a user's
//! several connections, auditors on `Archive`) share one list, and a refresh shares every
//! chunk but the last with the list it extends.

use std::sync::Arc;

/// Entries per chunk: a refresh copies at most this many.
const CHUNK: usize = 4096;

/// (uid, message record seq) pairs, ascending by uid, in chunks of [`CHUNK`]; all chunks are
/// full except the last, so the n-th entry is found by division.
#[derive(Clone, Debug, Default)]
pub(crate) struct Entries {
    chunks: Vec<Arc<Vec<(u64, u64)>>>,
    len: usize,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entry `i` (0-based).
    pub fn get(&self, i: usize) -> Option<(u64, u64)> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).copied()
    }

    /// Appends an entry; its uid must be above every uid in the list.
    pub fn push(&mut self, entry: (u64, u64)) {
        match self.chunks.last_mut() {
            // A chunk shared with other lists is copied before it grows (at most CHUNK entries).
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                self.chunks.push(Arc::new(chunk));
            }
        }
        self.len += 1;
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u64, u64)> + '_ {
        ExactLen {
            inner: self.chunks.iter().flat_map(|c| c.iter().copied()),
            left: self.len,
        }
    }

    /// The last entry (the highest uid).
    pub fn last(&self) -> Option<(u64, u64)> {
        self.chunks.last()?.last().copied()
    }

    /// The index of `uid`, if present.
    pub fn position(&self, uid: u64) -> Option<usize> {
        // The first chunk whose last uid is not below `uid` is the only one that can hold it.
        let c = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(|(u, _)| *u < uid));
        let chunk = self.chunks.get(c)?;
        let i = chunk.binary_search_by_key(&uid, |(u, _)| *u).ok()?;
        Some(c * CHUNK + i)
    }
}

/// An iterator that knows its length (`flat_map` does not).
struct ExactLen<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator<Item = (u64, u64)>> Iterator for ExactLen<I> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.inner.next()?;
        self.left -= 1;
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator<Item = (u64, u64)>> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_across_chunks_are_found_and_clones_share_full_chunks() {
        let mut a = Entries::default();
        let n = CHUNK * 2 + 17;
        for i in 0..n as u64 {
            a.push((10 + 3 * i, 5 + 3 * i));
        }
        assert_eq!(a.len(), n);
        assert_eq!(a.iter().len(), n);
        assert_eq!(a.get(0), Some((10, 5)));
        assert_eq!(a.get(CHUNK), Some((10 + 3 * CHUNK as u64, 5 + 3 * CHUNK as u64)));
        assert_eq!(a.get(n), None);
        assert_eq!(a.last(), a.get(n - 1));
        assert_eq!(Entries::default().last(), None);
        for i in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, n - 1] {
            assert_eq!(a.position(10 + 3 * i as u64), Some(i), "{i}");
            assert_eq!(a.position(11 + 3 * i as u64), None, "{i}");
        }
        assert_eq!(a.position(0), None);
        assert!(a.iter().map(|(u, _)| u).eq((0..n as u64).map(|i| 10 + 3 * i)));

        let mut b = a.clone();
        b.push((1_000_000, 1_000_000));
        assert_eq!((a.len(), b.len()), (n, n + 1));
        assert_eq!(a.position(1_000_000), None, "the original does not grow");
        assert_eq!(b.position(1_000_000), Some(n));
        assert!(Arc::ptr_eq(&a.chunks[0], &b.chunks[0]), "full chunks are shared");
        assert!(
            !Arc::ptr_eq(&a.chunks[2], &b.chunks[2]),
            "the last chunk was copied"
        );
    }
}
