//! The Merkle tree on the generating side: proofs from stored subtree hashes. The hashing and
//! every proof check are archive-verify's ([`archive_verify::merkle`]), re-exported here, so
//! the code that makes a proof and the code that checks it agree by construction.

pub use archive_verify::merkle::{
    empty_root, leaf_hash, node_hash, split, verify_consistency, verify_inclusion, Frontier, Hash,
};

/// Something that knows the hash of every complete, aligned subtree of a tree: the subtree of
/// height `level` whose leftmost leaf is `index << level`.
pub trait HashSource {
    /// Hash of the complete subtree at (`level`, `index`).
    fn complete_subtree(&self, level: u32, index: u64) -> crate::Result<Hash>;

    /// `MTH(D[lo:hi])` for any range, built from complete subtrees.
    fn range_hash(&self, lo: u64, hi: u64) -> crate::Result<Hash> {
        let n = hi - lo;
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.complete_subtree(n.trailing_zeros(), lo >> n.trailing_zeros());
        }
        let k = split(n);
        Ok(node_hash(
            &self.range_hash(lo, lo + k)?,
            &self.range_hash(lo + k, hi)?,
        ))
    }

    /// The root of the tree of the first `size` leaves.
    fn root(&self, size: u64) -> crate::Result<Hash> {
        self.range_hash(0, size)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1 PATH).
    fn inclusion_proof(&self, index: u64, size: u64) -> crate::Result<Vec<Hash>> {
        if index >= size {
            return Err(crate::Error::Rejected(format!(
                "leaf {index} is not in a tree of size {size}"
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// PATH(m, D[lo:hi]) appended bottom-up to `out`.
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> crate::Result<()> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out)?;
            out.push(self.range_hash(lo + k, hi)?);
        } else {
            self.path(m - k, lo + k, hi, out)?;
            out.push(self.range_hash(lo, lo + k)?);
        }
        Ok(())
    }

    /// Consistency proof between the trees of `old` and `new` leaves (RFC 6962 §2.1.2 PROOF).
    fn consistency_proof(&self, old: u64, new: u64) -> crate::Result<Vec<Hash>> {
        if old > new {
            return Err(crate::Error::Rejected(format!(
                "cannot prove size {old} consistent with the smaller size {new}"
            )));
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// SUBPROOF(m, D[lo:hi], b) appended bottom-up to `out`.
    fn subproof(&self, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) -> crate::Result<()> {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.range_hash(lo, hi)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, whole, out)?;
            out.push(self.range_hash(lo + k, hi)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, out)?;
            out.push(self.range_hash(lo, lo + k)?);
        }
        Ok(())
    }
}

/// Position of the complete subtree (`level`, `index`) in the post-order sequence of hashes
/// that [`Frontier::push`] returns: leaf `m`'s hash comes after `2m - popcount(m)` earlier
/// hashes, and the subtrees it completes follow it directly.
pub fn stored_hash_index(level: u32, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    2 * last_leaf - u64::from(last_leaf.count_ones()) + u64::from(level)
}

/// Number of stored hashes for a tree of `size` leaves.
pub fn stored_hash_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// An in-memory tree holding every stored hash; for tests, tools and small trees.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    stored: Vec<Hash>,
}

impl MemoryTree {
    /// Appends a leaf (raw leaf bytes, hashed with the leaf prefix).
    pub fn push_leaf(&mut self, leaf: &[u8]) {
        let completed = self.frontier.push(leaf_hash(leaf));
        self.stored.extend(completed);
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }
}

impl HashSource for MemoryTree {
    fn complete_subtree(&self, level: u32, index: u64) -> crate::Result<Hash> {
        let i = stored_hash_index(level, index);
        self.stored
            .get(i as usize)
            .copied()
            .ok_or_else(|| crate::Error::Internal(format!("no subtree ({level}, {index}) stored")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::default();
        for i in 0..n {
            t.push_leaf(&i.to_be_bytes());
        }
        t
    }

    #[test]
    fn stored_index_matches_push_order() {
        let t = tree(37);
        assert_eq!(t.stored.len() as u64, stored_hash_count(37));
        for i in 0..37u64 {
            let leaf = leaf_hash(&i.to_be_bytes());
            assert_eq!(t.stored[stored_hash_index(0, i) as usize], leaf);
        }
    }

    #[test]
    fn frontier_root_equals_recursive_root() {
        for n in 0..70 {
            let t = tree(n);
            assert_eq!(t.frontier.root(), t.root(n).unwrap(), "size {n}");
        }
    }
}
