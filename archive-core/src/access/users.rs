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
    /// API tokens (their hashes), [`super::tokens`].
    pub(super) tokens: Vec<super::tokens::StoredToken>,
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
            tokens: Vec::new(),
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

    /// The user's API tokens (ids, hashes, creation times; never the tokens themselves).
    pub fn tokens(&self) -> &[super::tokens::StoredToken] {
        &self.tokens
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
    /// The API token was revoked.
    Revoked,
}

impl AuthFailure {
    /// A short token for audit records: `unknown-user`, `wrong-password`, `disabled`,
    /// `token-revoked`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown-user",
            AuthFailure::WrongPassword => "wrong-password",
            AuthFailure::Disabled => "disabled",
            AuthFailure::Revoked => "token-revoked",
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

    /// Refuses a name that is an address of a user (a login by it would be ambiguous).
    fn check_name_not_an_address(&self, name: &str) -> Result<()> {
        let key = login_key(name);
        match self
            .by_name
            .values()
            .find(|u| u.addresses().is_some_and(|a| a.contains(&key)))
        {
            Some(owner) => Err(Error::AddressTaken {
                address: key,
                user: owner.name.clone(),
                disabled: owner.disabled,
                is_name: false,
            }),
            None => Ok(()),
        }
    }

    /// Refuses addresses that would make `name`'s logins (or another user's) ambiguous: an
    /// address that is another user's name, always; an address another user has (enabled or
    /// disabled), unless `share` (several users see `info@`'s mail; nobody logs in with it).
    pub fn check_addresses_free<S: AsRef<str>>(
        &self,
        name: &str,
        addresses: impl IntoIterator<Item = S>,
        share: bool,
    ) -> Result<()> {
        let name = login_key(name);
        for address in addresses {
            let address = normalize_address(address.as_ref())?;
            if let Some(named) = self.by_name.get(&address).filter(|u| u.name != name) {
                return Err(Error::AddressTaken {
                    address,
                    user: named.name.clone(),
                    disabled: named.disabled,
                    is_name: true,
                });
            }
            let other = self
                .by_name
                .values()
                .find(|u| u.name != name && u.addresses().is_some_and(|a| a.contains(&address)));
            if let (Some(other), false) = (other, share) {
                return Err(Error::AddressTaken {
                    address,
                    user: other.name.clone(),
                    disabled: other.disabled,
                    is_name: false,
                });
            }
        }
        Ok(())
    }

    /// Adds a new user; refuses a name that exists (enabled or not) or is someone's address,
    /// and addresses that another user has or that are another user's name.
    pub fn add(&mut self, user: UserRecord) -> Result<()> {
        self.add_checked(user, false)
    }

    /// Adds a new user like [`Users::add`], but lets it share addresses other users have
    /// (nobody can log in with a shared address; each of them sees its mail).
    pub fn add_sharing(&mut self, user: UserRecord) -> Result<()> {
        self.add_checked(user, true)
    }

    fn add_checked(&mut self, user: UserRecord, share: bool) -> Result<()> {
        self.check_name_free(&user.name)?;
        self.check_name_not_an_address(&user.name)?;
        if let Some(addresses) = user.addresses() {
            self.check_addresses_free(&user.name, addresses, share)?;
        }
        self.by_name.insert(user.name.clone(), user);
        self.changed = true;
        Ok(())
    }

    /// Adds and removes addresses of a user (not an auditor): removals first, then additions,
    /// checked as for a new user (`share` allows addresses others have). A user keeps at least
    /// one address. Returns whether anything changed.
    pub fn change_addresses(
        &mut self,
        name: &str,
        add: &[String],
        remove: &[String],
        share: bool,
    ) -> Result<bool> {
        let add = add
            .iter()
            .map(|a| normalize_address(a))
            .collect::<Result<Vec<_>>>()?;
        let remove = remove
            .iter()
            .map(|a| normalize_address(a))
            .collect::<Result<Vec<_>>>()?;
        let user = self.get(name).ok_or_else(|| Error::NoSuchUser(login_key(name)))?;
        let Some(current) = user.addresses() else {
            return Err(Error::Rejected(format!(
                "{} is an auditor: auditors have domains, not addresses",
                user.name
            )));
        };
        let user_name = user.name.clone();
        for address in &remove {
            if !current.contains(address) {
                return Err(Error::Rejected(format!(
                    "{address} is not an address of {user_name}"
                )));
            }
        }
        let mut next = current.clone();
        for address in &remove {
            next.remove(address);
        }
        let new: Vec<&String> = add.iter().filter(|a| !next.contains(*a)).collect();
        self.check_addresses_free(&user_name, &new, share)?;
        next.extend(add);
        if next.is_empty() {
            return Err(Error::Rejected(format!(
                "{user_name} would have no address left: a user needs at least one"
            )));
        }
        let user = self.get_mut(&user_name)?;
        if matches!(&user.role, Role::User { addresses } if *addresses == next) {
            return Ok(false);
        }
        user.role = Role::User { addresses: next };
        user.updated = now();
        self.changed = true;
        Ok(true)
    }

    /// Addresses that several users have, with their names (in order): nobody can log in
    /// with them.
    pub fn shared_addresses(&self) -> Vec<(String, Vec<String>)> {
        let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for user in self.by_name.values() {
            for address in user.addresses().into_iter().flatten() {
                owners.entry(address).or_default().push(user.name.clone());
            }
        }
        owners
            .into_iter()
            .filter(|(_, names)| names.len() > 1)
            .map(|(address, names)| (address.to_string(), names))
            .collect()
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

    /// The user a login names: by name, else by an address that exactly one enabled user has
    /// (a disabled user's addresses do not stand in another's way), else by an address only
    /// one (disabled) user has, so that the answer can say "disabled".
    fn find_login(&self, login: &str) -> Option<&UserRecord> {
        let key = login_key(login);
        if let Some(user) = self.by_name.get(&key) {
            return Some(user);
        }
        let owners: Vec<&UserRecord> = self
            .by_name
            .values()
            .filter(|u| u.addresses().is_some_and(|a| a.contains(&key)))
            .collect();
        let enabled: Vec<&UserRecord> = owners.iter().copied().filter(|u| !u.disabled).collect();
        match (enabled.as_slice(), owners.as_slice()) {
            ([only], _) => Some(only),
            ([], [only]) => Some(only),
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
            users.add_sharing(r).unwrap();
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
    fn an_address_belongs_to_one_user_unless_shared_on_purpose() {
        let mut users = users([alice()]);
        let alice2 =
            || UserRecord::new("alice2", Role::user(["ALICE@example.com"]).unwrap(), PASSWORD).unwrap();
        let e = users.add(alice2()).unwrap_err().to_string();
        assert_eq!(e, "alice@example.com is already an address of user alice");
        // A name that is someone's address, an address that is someone's name: refused too.
        let named = UserRecord::new("a.smith@example.org", Role::auditor_all(), PASSWORD).unwrap();
        assert!(users.add(named).is_err());
        users
            .add(UserRecord::new("bob@example.net", Role::auditor_all(), PASSWORD).unwrap())
            .unwrap();
        let e = users
            .change_addresses("alice", &["bob@example.net".into()], &[], true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "bob@example.net is already the login name of user bob@example.net"
        );
        // Shared on purpose: both see its mail, nobody logs in with it.
        users.add_sharing(alice2()).unwrap();
        assert_eq!(
            users.shared_addresses(),
            [(
                "alice@example.com".to_string(),
                vec!["alice".to_string(), "alice2".to_string()]
            )]
        );
        assert_eq!(
            users.authenticate("alice@example.com", PASSWORD),
            Err(AuthFailure::UnknownUser)
        );
        // A disabled user's address stands in nobody's way.
        users.set_disabled("alice2", true).unwrap();
        assert_eq!(
            users.authenticate("alice@example.com", PASSWORD).unwrap().name,
            "alice"
        );
        // Repaired: alice2 loses the address; alice is its only owner again.
        users.set_disabled("alice2", false).unwrap();
        let replacement = ["alice2@example.com".to_string()];
        assert!(users
            .change_addresses("alice2", &replacement, &["alice@example.com".into()], false)
            .unwrap());
        assert!(users.shared_addresses().is_empty());
        assert_eq!(
            users.authenticate("alice@example.com", PASSWORD).unwrap().name,
            "alice"
        );
        assert_eq!(
            users.authenticate("alice2@example.com", PASSWORD).unwrap().name,
            "alice2"
        );
    }

    #[test]
    fn address_changes_are_checked() {
        let mut users = users([alice()]);
        users.changed = false;
        let all = ["alice@example.com".to_string(), "a.smith@example.org".to_string()];
        let e = users
            .change_addresses("alice", &[], &all, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no address left"), "{e}");
        let e = users
            .change_addresses("alice", &[], &["x@example.com".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an address of alice"), "{e}");
        assert!(users.change_addresses("nobody", &[], &[], false).is_err());
        assert!(!users
            .change_addresses("alice", &["Alice@Example.com".into()], &[], false)
            .unwrap());
        assert!(!users.changed);
        let root = UserRecord::new("root", Role::auditor_all(), PASSWORD).unwrap();
        users.add(root).unwrap();
        assert!(users
            .change_addresses("root", &["r@example.com".into()], &[], false)
            .unwrap_err()
            .to_string()
            .contains("auditor"));
        assert!(users
            .change_addresses("alice", &["new@example.com".into()], &[], false)
            .unwrap());
        assert!(users.changed);
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
