//! Access events. Every access to archived mail is itself appended to the tamper-evident log
//! as an `audit` record, so the trail of who looked at what is as trustworthy as the mail.

/// One access event, stored as JSON in an `audit` record's leaf.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// Who: a user name, or `cli:<os user>` for local command-line access.
    pub actor: String,
    /// What: `login`, `login-failed`, `search`, `view`, `download`, `export`, …
    pub action: String,
    /// On what: a query, a seq range, a mailbox — whatever the action concerns.
    pub target: String,
    /// From where: client address or `local`.
    pub origin: String,
}
