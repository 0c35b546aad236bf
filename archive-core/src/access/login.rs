//! The one login path of every front door: rate limit, verify against the users file as it is
//! now, and append the outcome as an audit record — in that order, in one call, so no front
//! door can skip a step.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Authenticated, LoginLimiter, RetryAfter, Users};
use crate::audit::AuditEvent;
use crate::Store;

/// Why a login was refused. The client learns only "failed" or "try later".
#[derive(Debug, thiserror::Error)]
pub enum LoginRefused {
    /// Wrong password, unknown or disabled user (the audit record says which).
    #[error("authentication failed")]
    Failed,
    /// Too many recent failures for this name or client address.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// The users file could not be read, or the audit record not appended: nobody logs in
    /// while their login cannot be recorded.
    #[error("login unavailable: {0}")]
    Unavailable(String),
}

/// Logins for the front doors of one store.
pub struct LoginGate {
    data_dir: PathBuf,
    limiter: LoginLimiter,
}

impl LoginGate {
    /// Logins against the users file of the store in `data_dir`.
    pub fn new(data_dir: &Path) -> LoginGate {
        LoginGate {
            data_dir: data_dir.to_path_buf(),
            limiter: LoginLimiter::new(),
        }
    }

    /// Checks `login`/`password` from `client` at `door` (`imap`, `web`). The users file is
    /// read on every login, so `mailvault user …` changes apply at the next login without a
    /// restart. Every verified attempt becomes an audit record; attempts refused by the rate
    /// limit do not (they cost no verification, and recording them would let anyone grow the
    /// log at will; the failures that led to the limit are recorded).
    pub fn login(
        &self,
        store: &Store,
        login: &str,
        password: &str,
        client: IpAddr,
        door: &str,
    ) -> std::result::Result<Authenticated, LoginRefused> {
        self.limiter.check(client, login)?;
        let users = Users::load(&self.data_dir).map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        let outcome = users.authenticate(login, password);
        let event = match &outcome {
            Ok(who) => AuditEvent::login(&who.name, door, client),
            Err(failure) => AuditEvent::login_failed(login, door, client, failure.reason()),
        };
        match &outcome {
            Ok(_) => self.limiter.record_success(client, login),
            Err(_) => self.limiter.record_failure(client, login),
        }
        store
            .append_audit(&event)
            .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        outcome.map_err(|_| LoginRefused::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Role, UserRecord};
    use crate::log::record::LeafBody;
    use crate::StoreConfig;

    /// The action and target of the newest record, which must be an audit record.
    fn last_audit(store: &Store) -> (String, String) {
        let record = store.record(store.stats().last_seq).unwrap();
        let LeafBody::Audit { event } = &record.leaf.body else {
            panic!("the newest record is not an audit record");
        };
        let event: AuditEvent = serde_json::from_slice(event).unwrap();
        (event.action, event.target)
    }

    #[test]
    fn every_verified_login_is_audited_and_failures_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("store");
        let key = data.join("signing.key");
        Store::create(&data, &key).unwrap();
        let store = Store::open(&data, &key, StoreConfig::default()).unwrap();
        Users::update(&data, |users| {
            let role = Role::user(["alice@example.com"])?;
            users.add(UserRecord::new("alice", role, "correct horse")?)
        })
        .unwrap();
        let gate = LoginGate::new(&data);
        let client: IpAddr = "192.0.2.7".parse().unwrap();

        let who = gate
            .login(&store, "Alice@Example.com", "correct horse", client, "imap")
            .unwrap();
        assert_eq!(who.name, "alice");
        assert_eq!(last_audit(&store), ("login".into(), "imap".into()));

        for _ in 0..10 {
            let refused = gate.login(&store, "alice", "wrong", client, "imap");
            assert!(matches!(refused, Err(LoginRefused::Failed)), "{refused:?}");
            assert_eq!(
                last_audit(&store),
                ("login-failed".into(), "imap reason=wrong-password".into())
            );
        }
        let before = store.stats().last_seq;
        let limited = gate.login(&store, "alice", "correct horse", client, "imap");
        assert!(
            matches!(limited, Err(LoginRefused::RateLimited(_))),
            "{limited:?}"
        );
        assert_eq!(
            store.stats().last_seq,
            before,
            "a rate-limited attempt appends nothing"
        );
        store.close().unwrap();
    }
}
