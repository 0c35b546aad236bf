//! Local users: who may log in to the read-only front doors, with which password, and what
//! they see once in. The set lives in `<data>/users.json` ([`super::users_file`]); this module
//! holds the rules: what a valid user is, how a login is checked, how users change.
//!
//! There is no operation that removes a user: like the mail, the record of who had access stays.
//! A user who must lose access is disabled.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use jiff::Timestamp;

use super::names::{login_key, normalize_address, normalize_domain, normalize_user_name};
use super::password::{hash_password, verify_dummy, verify_password};
use crate::search::Principal;
use crate::{Error, Result};

/// What a user may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sees mail to or from one of these addresses (lower case, at least one).
    User { addresses: BTreeSet<String> },
    /// Sees every message in scope, with full envelopes.
    Auditor { domains: AuditorDomains },
}

/// The domains an auditor sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditorDomains {
    /// The whole archive.
    All,
    /// Mail with a sender or recipient in one of these domains or their subdomains (lower
    /// case, at least one).
    Only(BTreeSet<String>),
}

impl Role {
    /// A user with these addresses (checked and folded; at least one).
    pub fn user<S: AsRef<str>>(addresses: impl IntoIterator<Item = S>) -> Result<Role> {
        let addresses = addresses
            .into_iter()
            .map(|a| normalize_address(a.as_ref()))
            .collect::<Result<BTreeSet<_>>>()?;
        if addresses.is_empty() {
            return Err(Error::Rejected("a user needs at least one address".into()));
        }
        Ok(Role::User { addresses })
    }

    /// An auditor of these domains (checked and folded; at least one).
    pub fn auditor_of<S: AsRef<str>>(domains: impl IntoIterator<Item = S>) -> Result<Role> {
        let domains = domains
            .into_iter()
            .map(|d| normalize_domain(d.as_ref()))
            .collect::<Result<BTreeSet<_>>>()?;
        if domains.is_empty() {
            return Err(Error::Rejected(
                "an auditor needs at least one domain, or all domains".into(),
            ));
        }
        Ok(Role::Auditor {
            domains: AuditorDomains::Only(domains),
        })
    }

    /// An auditor of the whole archive.
    pub fn auditor_all() -> Role {
        Role::Auditor {
            domains: AuditorDomains::All,
        }
    }

    /// `user` or `auditor`, as the users file and the CLI spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Role::User { .. } => "user",
            Role::Auditor { .. } => "auditor",
        }
    }

    /// The search principal this role logs in as. The scope was checked and folded on the
    /// way in, exactly as [`Principal::user`] and [`Principal::auditor_of`] would.
    pub fn principal(&self) -> Principal {
        match self {
            Role::User { addresses } => Principal::User {
                addresses: addresses.clone(),
            },
            Role::Auditor {
                domains: AuditorDomains::Only(domains),
            } => Principal::Auditor {
                domains: Some(domains.clone()),
            },
            Role::Auditor {
                domains: AuditorDomains::All,
            } => Principal::auditor_all(),
        }
    }
}

/// One local user. Built by [`UserRecord::new`] or read from the users file, so every field
/// has passed the checks above; change it through [`Users`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) disabled: bool,
    pub(super) password_hash: String,
    pub(super) created: Timestamp,
    pub(super) updated: Timestamp,
}

impl UserRecord {
    /// A new, enabled user. Checks the name and the password and hashes the password (which
    /// takes a noticeable fraction of a second, by design).
    pub fn new(name: &str, role: Role, password: &str) -> Result<UserRecord> {
        let name = normalize_user_name(name)?;
        let password_hash = hash_password(password)?;
        let now = now();
        Ok(UserRecord {
            name,
            role,
            disabled: false,
            password_hash,
            created: now,
            updated: now,
        })
    }

    /// The login name (lower case).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the user sees.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Whether logins are refused.
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// The Argon2id PHC string. Only for the users file: never print or log it.
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }

    /// When the user was added.
    pub fn created(&self) -> Timestamp {
        self.created
    }

    /// When the password or the disabled flag last changed.
    pub fn updated(&self) -> Timestamp {
        self.updated
    }

    fn addresses(&self) -> Option<&BTreeSet<String>> {
        match &self.role {
            Role::User { addresses } => Some(addresses),
            Role::Auditor { .. } => None,
        }
    }
}

/// A successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The user's name (which may differ from what was typed: a login by address).
    pub name: String,
    /// What the session may see.
    pub principal: Principal,
}

/// Why a login failed. Every variant shows the client the same message (so nobody learns
/// whether a name exists or is disabled); [`AuthFailure::reason`] tells the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub enum AuthFailure {
    /// No user has this name (or it is an address several users share).
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// The user exists and the password may be right, but the user is disabled.
    Disabled,
}

impl AuthFailure {
    /// A short token for audit records: `unknown-user`, `wrong-password`, `disabled`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown-user",
            AuthFailure::WrongPassword => "wrong-password",
            AuthFailure::Disabled => "disabled",
        }
    }
}

/// The local users, by name.
#[derive(Clone, Debug, Default)]
pub struct Users {
    pub(super) by_name: BTreeMap<String, UserRecord>,
    /// Set by every change, so [`Users::update`] writes the file only when something changed.
    pub(super) changed: bool,
}

impl Users {
    /// Every user, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &UserRecord> {
        self.by_name.values()
    }

    /// The user with this name (any case), if any.
    pub fn get(&self, name: &str) -> Option<&UserRecord> {
        self.by_name.get(&login_key(name))
    }

    /// Refuses a name that exists (enabled or not): names are never reused.
    pub fn check_name_free(&self, name: &str) -> Result<()> {
        let Some(existing) = self.get(name) else {
            return Ok(());
        };
        Err(Error::UserExists {
            name: existing.name.clone(),
            disabled: existing.disabled,
        })
    }

    /// Adds a new user; refuses a name that exists (enabled or not).
    pub fn add(&mut self, user: UserRecord) -> Result<()> {
        self.check_name_free(&user.name)?;
        self.by_name.insert(user.name.clone(), user);
        self.changed = true;
        Ok(())
    }

    /// Gives a user a new password (checked and hashed here).
    pub fn set_password(&mut self, name: &str, password: &str) -> Result<()> {
        let hash = hash_password(password)?;
        let user = self.get_mut(name)?;
        user.password_hash = hash;
        user.updated = now();
        self.changed = true;
        Ok(())
    }

    /// Sets a password hashed beforehand with [`super::hash_password`], so a caller can keep
    /// the slow hashing outside the users file lock.
    pub fn set_password_hash(&mut self, name: &str, password_hash: String) -> Result<()> {
        super::password::check_stored_hash(&password_hash).map_err(|reason| Error::Malformed {
            what: "password hash",
            reason,
        })?;
        let user = self.get_mut(name)?;
        user.password_hash = password_hash;
        user.updated = now();
        self.changed = true;
        Ok(())
    }

    /// Disables or re-enables a user. Returns whether anything changed (doing it twice is
    /// not an error).
    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<bool> {
        let user = self.get_mut(name)?;
        if user.disabled == disabled {
            return Ok(false);
        }
        user.disabled = disabled;
        user.updated = now();
        self.changed = true;
        Ok(true)
    }

    /// Checks a login: `login` is a user name or, failing that, an address that exactly one
    /// user has. Costs one Argon2id verification whatever the outcome, so response times do
    /// not tell whether a name exists.
    pub fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> std::result::Result<Authenticated, AuthFailure> {
        let Some(user) = self.find_login(login) else {
            verify_dummy(password);
            return Err(AuthFailure::UnknownUser);
        };
        // Verify even for disabled users: the answer must take the same time.
        let password_matches = verify_password(password, &user.password_hash);
        if user.disabled {
            return Err(AuthFailure::Disabled);
        }
        if !password_matches {
            return Err(AuthFailure::WrongPassword);
        }
        Ok(Authenticated {
            name: user.name.clone(),
            principal: user.role.principal(),
        })
    }

    /// Whether `login` is a user's name or one of a user's addresses (enabled or not, shared
    /// or not): such a login is decided by the users file alone, never passed through.
    pub fn knows(&self, login: &str) -> bool {
        let key = login_key(login);
        self.by_name.contains_key(&key)
            || self
                .by_name
                .values()
                .any(|u| u.addresses().is_some_and(|a| a.contains(&key)))
    }

    fn find_login(&self, login: &str) -> Option<&UserRecord> {
        let key = login_key(login);
        if let Some(user) = self.by_name.get(&key) {
            return Some(user);
        }
        let mut owners = self
            .by_name
            .values()
            .filter(|u| u.addresses().is_some_and(|a| a.contains(&key)));
        match (owners.next(), owners.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut UserRecord> {
        let key = login_key(name);
        self.by_name.get_mut(&key).ok_or(Error::NoSuchUser(key))
    }
}

/// Now, to the second: the users file records when, not how fast.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery";

    fn alice() -> UserRecord {
        let role = Role::user(["Alice@Example.com", "a.smith@example.org"]).unwrap();
        UserRecord::new("Alice", role, PASSWORD).unwrap()
    }

    fn users(records: impl IntoIterator<Item = UserRecord>) -> Users {
        let mut users = Users::default();
        for r in records {
            users.add(r).unwrap();
        }
        users
    }

    #[test]
    fn roles_check_and_fold_their_scope() {
        let Role::User { addresses } = Role::user(["B@X.org", "a@x.org", "b@x.org"]).unwrap() else {
            panic!("user role");
        };
        assert_eq!(addresses.into_iter().collect::<Vec<_>>(), ["a@x.org", "b@x.org"]);
        let none: [&str; 0] = [];
        assert!(Role::user(none)
            .unwrap_err()
            .to_string()
            .contains("at least one address"));
        assert!(Role::user(["not-an-address"]).is_err());
        assert!(Role::auditor_of(none)
            .unwrap_err()
            .to_string()
            .contains("at least one domain"));
        assert!(Role::auditor_of(["bad domain"]).is_err());
        assert_eq!(
            Role::auditor_of(["@Example.COM"]).unwrap(),
            Role::Auditor {
                domains: AuditorDomains::Only(["example.com".to_string()].into())
            }
        );
    }

    #[test]
    fn the_right_password_gives_the_role_principal() {
        let pm = UserRecord::new("pm", Role::auditor_of(["example.com"]).unwrap(), PASSWORD).unwrap();
        let root = UserRecord::new("root", Role::auditor_all(), PASSWORD).unwrap();
        let users = users([alice(), pm, root]);
        let ok = users.authenticate("alice", PASSWORD).unwrap();
        assert_eq!(ok.name, "alice");
        assert_eq!(
            ok.principal,
            Principal::user(["alice@example.com", "a.smith@example.org"]).unwrap()
        );
        assert_eq!(
            users.authenticate("PM", PASSWORD).unwrap().principal,
            Principal::auditor_of(["example.com"]).unwrap()
        );
        assert_eq!(
            users.authenticate("root", PASSWORD).unwrap().principal,
            Principal::auditor_all()
        );
    }

    #[test]
    fn logins_by_a_unique_address_work_shared_ones_do_not() {
        let bob = UserRecord::new(
            "bob",
            Role::user(["bob@example.com", "info@example.com"]).unwrap(),
            PASSWORD,
        )
        .unwrap();
        let carol = UserRecord::new("carol", Role::user(["info@example.com"]).unwrap(), PASSWORD).unwrap();
        let users = users([alice(), bob, carol]);
        assert_eq!(
            users.authenticate("A.Smith@example.org", PASSWORD).unwrap().name,
            "alice"
        );
        assert_eq!(
            users.authenticate("bob@example.com", PASSWORD).unwrap().name,
            "bob"
        );
        assert_eq!(
            users.authenticate("info@example.com", PASSWORD),
            Err(AuthFailure::UnknownUser)
        );
        // The users file still knows a shared address: it is never passed through.
        assert!(users.knows("INFO@example.com"));
        assert!(users.knows("Carol"));
        assert!(users.knows("a.smith@example.org"));
        assert!(!users.knows("dave@example.com"));
    }

    #[test]
    fn wrong_unknown_and_disabled_all_fail_alike_but_say_why_to_the_audit() {
        let mut users = users([alice()]);
        let wrong = users.authenticate("alice", "wrong password").unwrap_err();
        let unknown = users.authenticate("mallory", PASSWORD).unwrap_err();
        users.set_disabled("alice", true).unwrap();
        let disabled = users.authenticate("alice", PASSWORD).unwrap_err();
        assert_eq!(
            [wrong, unknown, disabled],
            [
                AuthFailure::WrongPassword,
                AuthFailure::UnknownUser,
                AuthFailure::Disabled
            ]
        );
        assert_eq!(wrong.to_string(), disabled.to_string());
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert_eq!(disabled.reason(), "disabled");
        users.set_disabled("alice", false).unwrap();
        assert!(users.authenticate("alice", PASSWORD).is_ok());
    }

    #[test]
    fn changes_are_tracked_and_duplicates_refused() {
        let mut users = users([alice()]);
        users.changed = false;
        let e = users.add(alice()).unwrap_err().to_string();
        assert_eq!(e, "user alice already exists");
        assert!(!users.changed);
        assert!(!users.set_disabled("alice", false).unwrap());
        assert!(!users.changed);
        assert!(users.set_disabled("ALICE", true).unwrap());
        assert!(users.changed);
        let e = users.add(alice()).unwrap_err().to_string();
        assert!(e.contains("disabled"), "{e}");
        assert!(users
            .set_disabled("nobody", true)
            .unwrap_err()
            .to_string()
            .contains("no user named"));
    }

    #[test]
    fn passwords_change_and_the_old_one_stops_working() {
        let mut users = users([alice()]);
        let before = users.get("alice").unwrap().clone();
        users.set_password("alice", "a new password").unwrap();
        assert!(users.authenticate("alice", "a new password").is_ok());
        assert_eq!(
            users.authenticate("alice", PASSWORD),
            Err(AuthFailure::WrongPassword)
        );
        let after = users.get("alice").unwrap();
        assert_eq!(after.created(), before.created());
        assert!(after.updated() >= before.updated());
        assert!(users.set_password("alice", "short").is_err());
        assert!(users.set_password_hash("alice", "plain".into()).is_err());
    }
}
