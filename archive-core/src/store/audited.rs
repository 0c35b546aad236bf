//! Accesses that are audit records: what a search or view found leaves the store only once
//! the record of that access is durable. [`Store::audited`] waits for it in place;
//! [`Store::audited_access`] hands back an [`AuditedAccess`] that holds the answer until then,
//! so a front door can run accesses on a few busy threads and wait for the commit elsewhere.

use std::sync::Arc;

use super::writer::Written;
use super::{Shared, Store};
use crate::audit::AuditEvent;
use crate::Result;

/// What an access found, held until the audit record of the access is durable: the only
/// ways to the answer are [`AuditedAccess::ready`] (when it is durable already) and
/// [`AuditedAccess::durable`] (which waits). Dropping it drops the answer unseen.
#[must_use = "the answer may leave only once its audit record is durable"]
pub struct AuditedAccess<T> {
    found: Result<T>,
    written: Written,
    shared: Arc<Shared>,
}

impl<T> AuditedAccess<T> {
    /// The answer if the record's wait is over (durable, or it never will be: then the
    /// error), without blocking; else the access back, to wait with
    /// [`AuditedAccess::durable`] where blocking is allowed.
    pub fn ready(self) -> std::result::Result<Result<T>, Self> {
        match self.shared.durability.settled(self.written) {
            Some(settled) => Ok(settled.and(self.found)),
            None => Err(self),
        }
    }

    /// The answer once the record is durable; waits for (or leads) its group commit. A
    /// record that does not become durable fails the call and the answer is dropped unseen.
    pub fn durable(self) -> Result<T> {
        self.shared.wait_durable(self.written)?;
        self.found
    }
}

impl Store {
    /// Runs `access` (a search, say) for the access `event` records, returning what it found
    /// only once the record is durable, as [`Store::append_audit`] then `access` would — but
    /// the store's committer thread starts the record's fsync while `access` works, so a
    /// request pays the longer of the two, not their sum. A record that does not become
    /// durable fails the call and what `access` found is dropped unseen.
    pub fn audited<T>(&self, event: &AuditEvent, access: impl FnOnce() -> Result<T>) -> Result<T> {
        self.audited_access(event, access)?.durable()
    }

    /// [`Store::audited`] without the wait for the record: writes it, asks the committer
    /// thread for its fsync, runs `access` and returns the answer held until the record is
    /// durable. A thread that runs one access after another (a search pool) goes on with the
    /// next instead of idling through the fsync.
    pub fn audited_access<T>(
        &self,
        event: &AuditEvent,
        access: impl FnOnce() -> Result<T>,
    ) -> Result<AuditedAccess<T>> {
        let written = self.shared.write_audit(event)?;
        self.shared.durability.commit_soon(written);
        Ok(AuditedAccess {
            found: access(),
            written,
            shared: self.shared.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SearchIndexing, StoreConfig};

    /// The answer leaves only with its record durable: `ready` and `durable` hand it out for
    /// a durable record, and neither does for a record that never will be (one of a
    /// generation a rewind ended), `ready` without blocking.
    #[test]
    fn an_answer_whose_record_cannot_become_durable_is_never_handed_out() {
        let (_dir, path, key) = crate::store::created_store();
        let config = StoreConfig {
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let store = Store::open(&path, &key, config).unwrap();
        let event = AuditEvent {
            actor: "test".into(),
            action: "search".into(),
            ..Default::default()
        };
        let access = store.audited_access(&event, || Ok(7)).unwrap();
        assert_eq!(access.durable().unwrap(), 7);
        let access = store.audited_access(&event, || Ok(8)).unwrap();
        store.shared.wait_durable(access.written).unwrap();
        match access.ready() {
            Ok(answer) => assert_eq!(answer.unwrap(), 8),
            Err(_) => panic!("a durable record's answer is ready"),
        }
        let cut = |found: u32| AuditedAccess {
            found: Ok(found),
            written: Written {
                seq: u64::MAX,
                generation: u64::MAX,
            },
            shared: store.shared.clone(),
        };
        match cut(1).ready() {
            Ok(answer) => assert!(answer.is_err(), "the answer of a cut record was handed out"),
            Err(_) => panic!("a cut record's wait is over"),
        }
        assert!(
            cut(2).durable().is_err(),
            "the answer of a cut record was handed out"
        );
        store.close().unwrap();
    }
}
