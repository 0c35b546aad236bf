//! Sessions of people logged in with a password (tower-sessions), kept in memory by
//! [`SessionMemory`], a store with a fixed ceiling: past it, the session idle longest is ended,
//! so no number of logins grows the server's memory without bound. Only a login makes a session
//! (the login form's CSRF token is a cookie of its own), so visitors who never log in cost
//! nothing here. A restart ends every session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use archive_core::search::Principal;

/// The session cookie's name.
pub const COOKIE: &str = "mailvault_session";

/// The key of [`LoggedIn`] in a session.
pub const LOGGED_IN: &str = "logged_in";

/// Who a session belongs to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoggedIn {
    /// The user's name.
    pub user: String,
    /// What they may see, as the login gate said.
    pub principal: Principal,
    /// When they logged in, Unix seconds (the absolute timeout counts from here).
    pub login_at: i64,
    /// When a request last refreshed the session, Unix seconds.
    pub seen_at: i64,
    /// The session's CSRF token: every state-changing request sends it back.
    pub csrf: String,
}

/// Sessions one user may hold at once (a browser each, and scripts that log in with the
/// form); past it their own session idle longest ends.
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// The user a session belongs to, once logged in.
fn user_of(record: &Record) -> Option<&str> {
    record.data.get(LOGGED_IN)?.get("user")?.as_str()
}

/// Sessions in memory, at most `max` of them. Clones share the sessions.
#[derive(Clone, Debug)]
pub struct SessionMemory {
    max: usize,
    records: Arc<Mutex<HashMap<Id, Record>>>,
}

impl SessionMemory {
    /// An empty store for at most `max` sessions.
    pub fn new(max: usize) -> SessionMemory {
        SessionMemory {
            max: max.max(1),
            records: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Sessions held now (expired ones included until they are pruned).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for `record`: if its user already holds [`MAX_SESSIONS_PER_USER`] other
    /// sessions, the one of theirs idle longest ends, so that one user logging in again and
    /// again cannot push everyone else's sessions out; then room in all ([`Self::make_room`]).
    fn make_room_for(records: &mut HashMap<Id, Record>, record: &Record, max: usize) {
        // Only a session that becomes this user's now (a login: it gets a new id) is counted;
        // the saves of every later request of it scan nothing.
        let becomes_theirs = records
            .get(&record.id)
            .is_none_or(|stored| user_of(stored) != user_of(record));
        if let Some(user) = user_of(record).filter(|_| becomes_theirs) {
            let mut theirs: Vec<(OffsetDateTime, Id)> = records
                .iter()
                .filter(|(id, r)| **id != record.id && user_of(r) == Some(user))
                .map(|(id, r)| (r.expiry_date, *id))
                .collect();
            if theirs.len() >= MAX_SESSIONS_PER_USER {
                theirs.sort_unstable_by_key(|(expiry, _)| *expiry);
                for (_, id) in &theirs[..=theirs.len() - MAX_SESSIONS_PER_USER] {
                    records.remove(id);
                }
            }
        }
        if !records.contains_key(&record.id) {
            Self::make_room(records, max);
        }
    }

    /// Makes room for one more: expired sessions go first, then the one expiring soonest
    /// (the one idle longest: expiry is the last activity plus the idle timeout).
    fn make_room(records: &mut HashMap<Id, Record>, max: usize) {
        if records.len() < max {
            return;
        }
        let now = OffsetDateTime::now_utc();
        records.retain(|_, r| r.expiry_date > now);
        while records.len() >= max {
            let Some(oldest) = records
                .iter()
                .min_by_key(|(_, r)| r.expiry_date)
                .map(|(id, _)| *id)
            else {
                break;
            };
            records.remove(&oldest);
        }
    }
}

#[async_trait]
impl SessionStore for SessionMemory {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut records = self.lock();
        while records.contains_key(&record.id) {
            record.id = Id::default();
        }
        Self::make_room_for(&mut records, record, self.max);
        records.insert(record.id, record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut records = self.lock();
        Self::make_room_for(&mut records, record, self.max);
        records.insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut records = self.lock();
        match records.get(id) {
            Some(r) if r.expiry_date > OffsetDateTime::now_utc() => Ok(Some(r.clone())),
            Some(_) => {
                records.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.lock().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sessions::cookie::time::Duration;

    fn record(expires_in: i64) -> Record {
        Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + Duration::seconds(expires_in),
        }
    }

    #[tokio::test]
    async fn the_store_holds_at_most_its_ceiling_and_ends_the_idlest_first() {
        let store = SessionMemory::new(2);
        let mut soon = record(10);
        let mut later = record(100);
        let mut newest = record(1000);
        store.create(&mut soon).await.unwrap();
        store.create(&mut later).await.unwrap();
        store.create(&mut newest).await.unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.load(&soon.id).await.unwrap().is_none());
        assert!(store.load(&later.id).await.unwrap().is_some());
        let mut expired = record(-1);
        store.save(&expired).await.unwrap();
        assert!(store.load(&expired.id).await.unwrap().is_none());
        store.create(&mut expired).await.unwrap();
        store.delete(&newest.id).await.unwrap();
        assert!(store.load(&newest.id).await.unwrap().is_none());
    }

    fn login(user: &str, expires_in: i64) -> Record {
        let mut r = record(expires_in);
        r.data
            .insert(LOGGED_IN.into(), serde_json::json!({ "user": user, "csrf": "x" }));
        r
    }

    #[tokio::test]
    async fn one_user_logging_in_again_and_again_ends_only_their_own_sessions() {
        let store = SessionMemory::new(MAX_SESSIONS_PER_USER + 2);
        let mut bob = login("bob", 10);
        store.create(&mut bob).await.unwrap();
        let mut visitor = record(20);
        store.create(&mut visitor).await.unwrap();
        let mut alices = Vec::new();
        for i in 0..MAX_SESSIONS_PER_USER * 3 {
            let mut alice = login("alice", 100 + i as i64);
            store.create(&mut alice).await.unwrap();
            alices.push(alice.id);
        }
        // bob's session expires soonest of all, and is kept: alice's oldest went instead.
        assert!(store.load(&bob.id).await.unwrap().is_some());
        let kept: Vec<bool> = futures_util::future::join_all(alices.iter().map(|id| store.load(id)))
            .await
            .into_iter()
            .map(|r| r.unwrap().is_some())
            .collect();
        assert_eq!(kept.iter().filter(|k| **k).count(), MAX_SESSIONS_PER_USER);
        assert!(
            kept[kept.len() - MAX_SESSIONS_PER_USER..].iter().all(|k| *k),
            "her newest stay"
        );
        // Saving one of hers again (a request refreshing it) ends none of the others.
        let mut again = store.load(alices.last().unwrap()).await.unwrap().unwrap();
        again.expiry_date += Duration::seconds(1000);
        store.save(&again).await.unwrap();
        let still = futures_util::future::join_all(alices.iter().map(|id| store.load(id))).await;
        assert_eq!(
            still.iter().filter(|r| r.as_ref().unwrap().is_some()).count(),
            MAX_SESSIONS_PER_USER
        );
    }
}
