//! The one login path of every front door: rate limit, verify, and append the outcome as an
//! audit record — in that order, in one call, so no front door can skip a step.
//!
//! Verification asks the users file as it is now; a login the users file does not know (no
//! user has it as name or address) and that pass-through handles goes to the mail server's
//! IMAP ([`PassThrough`]). A local user always wins: their failure is never retried upstream.
//!
//! A session outlives its login, so it asks again at each request ([`LoginGate::recheck`]):
//! a disabled user's session ends, a changed scope applies, without a restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::current::UsersNow;
use super::names::login_key;
use super::upstream::{PassThrough, UpstreamRefusal};
use super::{AuthFailure, Authenticated, LoginLimiter, RetryAfter, Users};
use crate::audit::AuditEvent;
use crate::Store;

/// Why a login was refused. The client learns only "failed" or "try later".
#[derive(Debug, thiserror::Error)]
pub enum LoginRefused {
    /// Wrong password, unknown or disabled user, or the upstream said no (the audit record
    /// says which).
    #[error("authentication failed")]
    Failed,
    /// Too many recent failures for this name or client address.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// The users file could not be read, the upstream could not be asked, or the audit record
    /// not appended: nobody logs in while their login cannot be checked and recorded.
    #[error("login unavailable: {0}")]
    Unavailable(String),
}

/// Logins for the front doors of one store.
pub struct LoginGate {
    data_dir: PathBuf,
    limiter: LoginLimiter,
    pass_through: Option<PassThrough>,
    /// The users file for [`LoginGate::recheck`], re-read only when it changed.
    users_now: UsersNow,
    /// When each (token id, client network) last had its login recorded.
    token_logins: Mutex<HashMap<(String, IpAddr), Instant>>,
}

/// A token's use from one client network is recorded as a `login` once per this long: a
/// script sends its token with every request, and one record per request would bury the
/// trail (each request's search or view is recorded anyway).
pub const TOKEN_LOGIN_RECORD_EVERY: Duration = Duration::from_secs(600);

/// Most (token, network) pairs remembered for [`TOKEN_LOGIN_RECORD_EVERY`]; past it the
/// memory is cleared (and the next uses are recorded again).
const MAX_TOKEN_LOGINS: usize = 4096;

/// How a verified attempt ended.
enum Verdict {
    /// Logged in; `via` names who vouched when it was not the users file.
    In {
        who: Authenticated,
        via: Option<&'static str>,
    },
    /// The users file said no.
    Local(AuthFailure),
    /// The upstream said no, or could not be asked.
    Upstream(UpstreamRefusal),
}

impl LoginGate {
    /// Logins against the users file of the store in `data_dir`.
    pub fn new(data_dir: &Path) -> LoginGate {
        LoginGate::with_pass_through(data_dir, None)
    }

    /// Logins against the users file and, for logins it does not know, `pass_through`.
    pub fn with_pass_through(data_dir: &Path, pass_through: Option<PassThrough>) -> LoginGate {
        LoginGate {
            data_dir: data_dir.to_path_buf(),
            limiter: LoginLimiter::new(),
            pass_through,
            users_now: UsersNow::new(data_dir),
            token_logins: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `login`/`password` from `client` at `door` (`imap`, `web`). The users file is
    /// read on every login, so `mailvault user …` changes apply at the next login without a
    /// restart. Every verified attempt becomes an audit record; attempts refused by the rate
    /// limit do not (they cost no verification, and recording them would let anyone grow the
    /// log at will; the failures that led to the limit are recorded). May block for the
    /// upstream's timeout when pass-through is configured. Refusals are counted
    /// ([`crate::metrics::LOGIN_FAILURES`]).
    pub fn login(
        &self,
        store: &Store,
        login: &str,
        password: &str,
        client: IpAddr,
        door: &str,
    ) -> std::result::Result<Authenticated, LoginRefused> {
        let outcome = self.check(store, login, password, client, door);
        count_refusal(&outcome, door);
        outcome
    }

    /// Checks an API token ([`super::tokens`]) from `client` at `door`, with the same rate
    /// limit as passwords (failures count against the client's network) and the same audit
    /// records: a failure always (actor `token`, `reason=…`), a success as `login` with
    /// `via=token id=<id>` once per [`TOKEN_LOGIN_RECORD_EVERY`] per token and network.
    pub fn login_token(
        &self,
        store: &Store,
        token: &str,
        client: IpAddr,
        door: &str,
    ) -> std::result::Result<Authenticated, LoginRefused> {
        let network = super::limiter::client_network(client);
        let limit_key = format!("(token) {network}");
        let outcome = (|| {
            self.limiter.check(client, &limit_key)?;
            // The file as it is now (a token revoked while serving is refused at once), read
            // only when it changed: a script's every request comes through here.
            let users = self
                .users_now
                .get()
                .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
            match users.authenticate_token(token) {
                Ok((who, id)) => {
                    self.limiter.record_success(client, &limit_key);
                    if self.token_login_due(&id, network) {
                        let event = AuditEvent::login_via(&who.name, door, client, &format!("token id={id}"));
                        store
                            .append_audit(&event)
                            .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
                    }
                    Ok(who)
                }
                Err(failure) => {
                    self.limiter.record_failure(client, &limit_key);
                    let event = AuditEvent::login_failed("token", door, client, failure.reason());
                    store
                        .append_audit(&event)
                        .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
                    Err(LoginRefused::Failed)
                }
            }
        })();
        count_refusal(&outcome, door);
        outcome
    }

    /// Who the user of a live session (`who`, as its login said) is now, by the users file as
    /// it is now: the local user's current principal, or [`LoginRefused::Failed`] when they are
    /// disabled (or no longer in the file), which is recorded as `login-failed` with reason
    /// `session-disabled` (`session-unknown-user`) at `door`. A pass-through user (no local
    /// record, a login pass-through handles) keeps the principal the upstream gave at login: the
    /// upstream cannot be asked without the password. Costs a `stat` of the users file (a read
    /// only when it changed), no password check and no rate limit; the caller ends the session
    /// on a refusal.
    pub fn recheck(
        &self,
        store: &Store,
        who: &Authenticated,
        client: IpAddr,
        door: &str,
    ) -> std::result::Result<Authenticated, LoginRefused> {
        let users = self
            .users_now
            .get()
            .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        let failure = match users.get(&who.name) {
            Some(user) if !user.disabled() => {
                return Ok(Authenticated {
                    name: user.name().to_string(),
                    principal: user.role().principal(),
                })
            }
            Some(_) => AuthFailure::Disabled,
            None if self.passes_through(&users, &who.name) => return Ok(who.clone()),
            None => AuthFailure::UnknownUser,
        };
        let reason = format!("session-{}", failure.reason());
        let event = AuditEvent::login_failed(&who.name, door, client, &reason);
        store
            .append_audit(&event)
            .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        let outcome = Err(LoginRefused::Failed);
        count_refusal(&outcome, door);
        outcome
    }

    /// Whether pass-through decides `login` (configured, handles it, and the users file knows
    /// neither the login nor the address it stands for), as at login.
    fn passes_through(&self, users: &Users, login: &str) -> bool {
        self.pass_through.as_ref().is_some_and(|p| {
            p.address_of(login)
                .is_some_and(|address| !users.knows(login) && !users.knows(&address))
        })
    }

    /// Whether the use of token `id` from `network` is to be recorded now (and notes it).
    fn token_login_due(&self, id: &str, network: IpAddr) -> bool {
        let mut seen = self.token_logins.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen.len() >= MAX_TOKEN_LOGINS {
            seen.retain(|_, at| now.duration_since(*at) < TOKEN_LOGIN_RECORD_EVERY);
            if seen.len() >= MAX_TOKEN_LOGINS {
                seen.clear();
            }
        }
        let key = (id.to_string(), network);
        match seen.get(&key) {
            Some(at) if now.duration_since(*at) < TOKEN_LOGIN_RECORD_EVERY => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }

    /// [`LoginGate::login`] without the counting.
    fn check(
        &self,
        store: &Store,
        login: &str,
        password: &str,
        client: IpAddr,
        door: &str,
    ) -> std::result::Result<Authenticated, LoginRefused> {
        // Failures count against the name as the gate understands it, so spelling variants
        // (case, spaces around it, a bare name standing for an address) share one allowance.
        let limit_key = self.limit_key(login);
        self.limiter.check(client, &limit_key)?;
        let users = Users::load(&self.data_dir).map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        let verdict = self.verify(&users, login, password);
        let event = match &verdict {
            Verdict::In { who, via: None } => AuditEvent::login(&who.name, door, client),
            Verdict::In { who, via: Some(via) } => AuditEvent::login_via(&who.name, door, client, via),
            Verdict::Local(failure) => AuditEvent::login_failed(login, door, client, failure.reason()),
            Verdict::Upstream(refusal) => AuditEvent::login_failed(login, door, client, refusal.reason()),
        };
        match &verdict {
            Verdict::In { .. } => self.limiter.record_success(client, &limit_key),
            // No verdict on the password: counts against the client, not the name.
            Verdict::Upstream(UpstreamRefusal::Unavailable(_)) => self.limiter.record_client_failure(client),
            Verdict::Local(_) | Verdict::Upstream(UpstreamRefusal::Rejected) => {
                self.limiter.record_failure(client, &limit_key)
            }
        }
        store
            .append_audit(&event)
            .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
        match verdict {
            Verdict::In { who, .. } => Ok(who),
            Verdict::Upstream(UpstreamRefusal::Unavailable(why)) => Err(LoginRefused::Unavailable(why)),
            Verdict::Local(_) | Verdict::Upstream(UpstreamRefusal::Rejected) => Err(LoginRefused::Failed),
        }
    }

    /// The name failures of `login` count against: the address pass-through would log in as,
    /// else the login trimmed and lower-cased.
    fn limit_key(&self, login: &str) -> String {
        let address = self.pass_through.as_ref().and_then(|p| p.address_of(login));
        address.unwrap_or_else(|| login_key(login.trim()))
    }

    /// The users file decides every login it knows; pass-through, if configured, the logins it
    /// handles; the users file (as an unknown user) the rest.
    fn verify(&self, users: &Users, login: &str, password: &str) -> Verdict {
        if let Some(pass_through) = &self.pass_through {
            // Neither the login nor the address it stands for may belong to a local user:
            // a local user (disabled, or sharing the address) is decided locally.
            if self.passes_through(users, login) {
                return match pass_through.authenticate(login, password) {
                    Ok(passed) => Verdict::In {
                        who: passed.who,
                        via: Some(passed.via),
                    },
                    Err(refusal) => Verdict::Upstream(refusal),
                };
            }
        }
        match users.authenticate(login, password) {
            Ok(who) => Verdict::In { who, via: None },
            Err(failure) => Verdict::Local(failure),
        }
    }
}

/// Counts a refused login in the metrics, by door and reason.
fn count_refusal(outcome: &std::result::Result<Authenticated, LoginRefused>, door: &str) {
    if let Err(refused) = outcome {
        let reason = match refused {
            LoginRefused::Failed => "failed",
            LoginRefused::RateLimited(_) => "rate_limited",
            LoginRefused::Unavailable(_) => "unavailable",
        };
        metrics::counter!(
            crate::metrics::LOGIN_FAILURES,
            "door" => crate::metrics::door_label(door),
            "reason" => reason
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_support::{self, store_with_users};
    use crate::access::Role;

    /// The action and target of the newest record, which must be an audit record.
    fn last_audit(store: &Store) -> (String, String) {
        let event = test_support::last_audit(store);
        (event.action, event.target)
    }

    #[test]
    fn every_verified_login_is_audited_and_failures_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Role::user(["alice@example.com"]).unwrap();
        let (data, store) = store_with_users(dir.path(), &[("alice", "correct horse", alice)]);
        let gate = LoginGate::new(&data);
        let client: IpAddr = "192.0.2.7".parse().unwrap();

        let who = gate
            .login(&store, "Alice@Example.com", "correct horse", client, "imap")
            .unwrap();
        assert_eq!(who.name, "alice");
        assert_eq!(last_audit(&store), ("login".into(), "imap".into()));

        for _ in 0..crate::access::limiter::FREE_FAILURES {
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
        // The failures slow this client's network down, not the name everywhere.
        let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
        let who = gate
            .login(&store, "alice", "correct horse", elsewhere, "imap")
            .unwrap();
        assert_eq!(who.name, "alice");
        store.close().unwrap();
    }

    #[test]
    fn a_recheck_follows_the_users_file_and_records_a_disabled_user() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Role::user(["alice@example.com"]).unwrap();
        let (data, store) = store_with_users(dir.path(), &[("alice", "correct horse", alice)]);
        let gate = LoginGate::new(&data);
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let who = gate
            .login(&store, "alice", "correct horse", client, "web")
            .unwrap();
        assert_eq!(gate.recheck(&store, &who, client, "web").unwrap(), who);

        Users::update(&data, |u| {
            u.change_addresses("alice", &["alice@example.org".into()], &[], false)
        })
        .unwrap();
        let now = gate.recheck(&store, &who, client, "web").unwrap();
        assert_eq!(
            now.principal,
            crate::search::Principal::user(["alice@example.com", "alice@example.org"]).unwrap()
        );

        Users::update(&data, |u| u.set_disabled("alice", true)).unwrap();
        let refused = gate.recheck(&store, &who, client, "web");
        assert!(matches!(refused, Err(LoginRefused::Failed)), "{refused:?}");
        assert_eq!(
            last_audit(&store),
            ("login-failed".into(), "web reason=session-disabled".into())
        );
        let stranger = Authenticated {
            name: "mallory".into(),
            principal: crate::search::Principal::auditor_all(),
        };
        assert!(gate.recheck(&store, &stranger, client, "imap").is_err());
        assert_eq!(
            last_audit(&store),
            ("login-failed".into(), "imap reason=session-unknown-user".into())
        );
        store.close().unwrap();
    }
}
