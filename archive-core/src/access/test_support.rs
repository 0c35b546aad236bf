//! What the access tests share: a store whose users file holds given users, and the newest
//! audit record.

use std::path::{Path, PathBuf};

use super::{Role, UserRecord, Users};
use crate::audit::AuditEvent;
use crate::log::record::LeafBody;
use crate::{Store, StoreConfig};

/// A new store under `dir` (its data directory returned too) whose users file holds
/// `users` (name, password, role).
pub(crate) fn store_with_users(dir: &Path, users: &[(&str, &str, Role)]) -> (PathBuf, Store) {
    let data = dir.join("store");
    let key = data.join("signing.key");
    Store::create(&data, &key).unwrap();
    let store = Store::open(&data, &key, StoreConfig::default()).unwrap();
    Users::update(&data, |all| {
        for (name, password, role) in users {
            all.add(UserRecord::new(name, role.clone(), password)?)?;
        }
        Ok(())
    })
    .unwrap();
    (data, store)
}

/// The newest record other than checkpoints (every group commit ends with one), which must
/// be an audit record.
pub(crate) fn last_audit(store: &Store) -> AuditEvent {
    let mut seq = store.stats().last_seq;
    loop {
        let record = store.read_record_unscoped(seq).unwrap();
        match &record.leaf.body {
            LeafBody::Checkpoint { .. } => seq -= 1,
            LeafBody::Audit { event } => return serde_json::from_slice(event).unwrap(),
            _ => panic!("the newest record is not an audit record"),
        }
    }
}
