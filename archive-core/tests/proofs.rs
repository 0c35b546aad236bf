//! Inclusion and consistency proofs over every tree size 1..300: they verify for the right
//! leaf, index, size and roots, and fail when any of those is wrong.

use archive_core::log::merkle::{
    leaf_hash, verify_consistency, verify_inclusion, Frontier, HashSource, MemoryTree,
};
use proptest::prelude::*;

fn tree(size: u64) -> MemoryTree {
    let mut t = MemoryTree::default();
    for i in 0..size {
        t.push_leaf(format!("leaf {i}").as_bytes());
    }
    t
}

fn leaf(i: u64) -> [u8; 32] {
    leaf_hash(format!("leaf {i}").as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn inclusion_proofs_verify_and_reject_wrong_inputs(size in 1u64..300, index_seed in 0u64..10_000) {
        let t = tree(size);
        let index = index_seed % size;
        let root = t.root(size).unwrap();
        let proof = t.inclusion_proof(index, size).unwrap();
        prop_assert!(verify_inclusion(&leaf(index), index, size, &proof, &root));
        // Wrong leaf.
        prop_assert!(!verify_inclusion(&leaf(index + 1000), index, size, &proof, &root));
        // Wrong index (any other index of the same tree).
        let other = (index + 1) % size;
        if other != index {
            prop_assert!(!verify_inclusion(&leaf(index), other, size, &proof, &root));
        }
        // Wrong size: the path does not lead to the real root of a tree of another size.
        // (A path alone cannot bind the size; the signed checkpoint pairs size and root.)
        let bigger = tree(size + 1);
        prop_assert!(!verify_inclusion(&leaf(index), index, size + 1, &proof, &bigger.root(size + 1).unwrap()));
        if size > 1 && index < size - 1 {
            prop_assert!(!verify_inclusion(&leaf(index), index, size - 1, &proof, &t.root(size - 1).unwrap()));
        }
        // Index outside the tree.
        prop_assert!(!verify_inclusion(&leaf(index), size, size, &proof, &root));
        // A tampered path element.
        if let Some(first) = proof.first() {
            let mut bad = proof.clone();
            bad[0] = leaf_hash(first);
            prop_assert!(!verify_inclusion(&leaf(index), index, size, &bad, &root));
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_wrong_inputs(new in 1u64..300, old_seed in 0u64..10_000) {
        let t = tree(new);
        let old = 1 + old_seed % new;
        let old_root = t.root(old).unwrap();
        let new_root = t.root(new).unwrap();
        let proof = t.consistency_proof(old, new).unwrap();
        prop_assert!(verify_consistency(old, &old_root, new, &new_root, &proof));
        // A different history of the old size.
        let mut forged = tree(old - 1);
        forged.push_leaf(b"rewritten");
        let forged_root = forged.root(old).unwrap();
        prop_assert!(!verify_consistency(old, &forged_root, new, &new_root, &proof));
        // Wrong new root.
        prop_assert!(!verify_consistency(old, &old_root, new, &leaf_hash(b"x"), &proof));
        // Wrong sizes, each paired with the real root of that size.
        if old < new {
            prop_assert!(!verify_consistency(old + 1, &t.root(old + 1).unwrap(), new, &new_root, &proof));
            let bigger = tree(new + 1);
            prop_assert!(!verify_consistency(old, &old_root, new + 1, &bigger.root(new + 1).unwrap(), &proof));
        }
        // Shrinking is never consistent.
        if old < new {
            prop_assert!(!verify_consistency(new, &new_root, old, &old_root, &proof));
        }
    }

    #[test]
    fn frontier_root_matches_tree_root(size in 0u64..300) {
        let t = tree(size);
        let mut f = Frontier::default();
        for i in 0..size {
            f.push(leaf(i));
        }
        prop_assert_eq!(f.root(), t.root(size).unwrap());
    }
}
