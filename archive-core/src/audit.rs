//! Access events. Every access to archived mail is itself appended to the tamper-evident log
//! as an `audit` record, so the trail of who looked at what is as trustworthy as the mail.

use std::net::IpAddr;

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

impl AuditEvent {
    /// A successful login: `user` is the account's name, `door` the front door (`imap`, `web`).
    pub fn login(user: &str, door: &str, origin: IpAddr) -> AuditEvent {
        AuditEvent {
            actor: printable(user),
            action: "login".into(),
            target: printable(door),
            origin: origin.to_string(),
        }
    }

    /// A successful login vouched for by someone other than the users file: `via` is
    /// `upstream` (the mail server accepted the password just now) or `upstream-cache` (it
    /// accepted the same password within the last minutes). The target reads
    /// `imap via=upstream`.
    pub fn login_via(user: &str, door: &str, origin: IpAddr, via: &str) -> AuditEvent {
        AuditEvent {
            target: format!("{} via={}", printable(door), printable(via)),
            ..AuditEvent::login(user, door, origin)
        }
    }

    /// A refused login. `given` is the name as the client sent it (bounded and made printable
    /// here: it is untrusted); `reason` says why, for auditors only: an
    /// [`AuthFailure::reason`](crate::access::AuthFailure::reason), an
    /// [`UpstreamRefusal::reason`](crate::access::UpstreamRefusal::reason) or `rate-limited`. The
    /// target reads `imap reason=wrong-password`.
    pub fn login_failed(given: &str, door: &str, origin: IpAddr, reason: &str) -> AuditEvent {
        AuditEvent {
            actor: printable(given),
            action: "login-failed".into(),
            target: format!("{} reason={}", printable(door), printable(reason)),
            origin: origin.to_string(),
        }
    }
}

impl AuditEvent {
    /// Recovery cut bytes off the log's end at open (`cut` says which, and where they are kept).
    pub fn recovery_cut(cut: &crate::store::Cut) -> AuditEvent {
        AuditEvent {
            actor: "mailvault".into(),
            action: "recovery-cut".into(),
            target: cut.to_string(),
            origin: "local".into(),
        }
    }

    /// The log went back to its last durable record after a failed fsync.
    pub fn recovery_rewind(rewound: &crate::store::Rewound) -> AuditEvent {
        AuditEvent {
            actor: "mailvault".into(),
            action: "recovery-rewind".into(),
            target: rewound.to_string(),
            origin: "local".into(),
        }
    }
}

/// Most bytes of a query kept in a `search` record; a longer one is cut and ends in `…`.
pub const MAX_QUERY_BYTES: usize = 2048;

/// A query as a `search` record keeps it: control characters (line breaks of literals
/// included) replaced, at most [`MAX_QUERY_BYTES`], cut at a character boundary and marked.
pub fn query_text(query: &str) -> String {
    let mut visible: String = query
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if visible.len() > MAX_QUERY_BYTES {
        let mut end = MAX_QUERY_BYTES;
        while !visible.is_char_boundary(end) {
            end -= 1;
        }
        visible.truncate(end);
        visible.push('…');
    }
    visible
}

/// At most 254 bytes, control characters replaced: client-supplied text must not flood the
/// log or drive the terminal of whoever reads `mailvault audit`.
fn printable(text: &str) -> String {
    let visible: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    crate::access::names::shorten(&visible).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_kept_visible_and_bounded() {
        assert_eq!(query_text("TEXT {3}\r\nabc"), "TEXT {3}\u{fffd}\u{fffd}abc");
        let long = query_text(&"ä".repeat(MAX_QUERY_BYTES));
        assert!(long.len() <= MAX_QUERY_BYTES + '…'.len_utf8() && long.ends_with('…'));
        assert_eq!(query_text("SUBJECT x"), "SUBJECT x");
    }

    #[test]
    fn login_events_name_who_where_and_why_and_bound_client_text() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let ok = AuditEvent::login("alice", "imap", ip);
        assert_eq!(
            (
                ok.actor.as_str(),
                ok.action.as_str(),
                ok.target.as_str(),
                ok.origin.as_str()
            ),
            ("alice", "login", "imap", "192.0.2.1")
        );
        let passed = AuditEvent::login_via("alice@example.com", "imap", ip, "upstream");
        assert_eq!(
            (
                passed.actor.as_str(),
                passed.action.as_str(),
                passed.target.as_str()
            ),
            ("alice@example.com", "login", "imap via=upstream")
        );
        let failed = AuditEvent::login_failed(
            &format!("eve\x1b[2J{}", "x".repeat(500)),
            "web",
            ip,
            "unknown-user",
        );
        assert_eq!(failed.action, "login-failed");
        assert_eq!(failed.target, "web reason=unknown-user");
        assert!(failed.actor.starts_with("eve\u{fffd}[2J") && failed.actor.len() <= 254);
    }
}
