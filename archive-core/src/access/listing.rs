//! The users as the web's read-only `/users` page lists them: name, role, scope, disabled —
//! never a password hash or a token. Only auditors of the whole archive may list them (the
//! list names every user and address across all domains), the rule of the access trail.

use std::path::Path;

use super::{AuditorDomains, Role, Users};
use crate::search::Principal;
use crate::{Error, Result};

/// One user, as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserSummary {
    /// Login name.
    pub name: String,
    /// `user` or `auditor`.
    pub role: &'static str,
    /// A user's addresses, an auditor's domains; empty for an auditor of everything.
    pub scope: Vec<String>,
    /// An auditor of every domain.
    pub all_domains: bool,
    /// Disabled users cannot log in.
    pub disabled: bool,
}

/// The users of the store in `dir`, by name, for `principal`: refused unless
/// [`Principal::may_read_audit_trail`].
pub fn list_users(dir: &Path, principal: &Principal) -> Result<Vec<UserSummary>> {
    if !principal.may_read_audit_trail() {
        return Err(Error::Rejected(
            "the list of users is for auditors of the whole archive".into(),
        ));
    }
    let users = Users::load(dir)?;
    let mut out: Vec<UserSummary> = users
        .iter()
        .map(|u| {
            let (scope, all_domains) = match u.role() {
                Role::User { addresses } => (addresses.iter().cloned().collect(), false),
                Role::Auditor {
                    domains: AuditorDomains::Only(d),
                } => (d.iter().cloned().collect(), false),
                Role::Auditor {
                    domains: AuditorDomains::All,
                } => (Vec::new(), true),
            };
            UserSummary {
                name: u.name().to_string(),
                role: u.role().name(),
                scope,
                all_domains,
                disabled: u.disabled(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
