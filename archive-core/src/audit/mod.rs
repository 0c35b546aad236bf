//! Access events. Every access to archived mail is itself appended to the tamper-evident log
//! as an `audit` record, so the trail of who looked at what is as trustworthy as the mail.
//!
//! A process that cannot append to the log because a server owns it (the command line's
//! `mailvault user …` while `serve` runs) leaves its event in the audit spool instead, which
//! the server takes into the log ([`spool`]); [`record`] picks the way.

mod spool;
pub mod trail;

use std::net::IpAddr;

pub use spool::{
    pending, record, spool, Recorded, SpoolIngester, SpoolRound, MAX_SPOOL_FILES_PER_ROUND,
    MAX_SPOOL_FILE_BYTES,
};

/// One access event, stored as JSON in an `audit` record's leaf.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// Who: a user name, or `cli:<os user>` for local command-line access.
    pub actor: String,
    /// What: `login`, `login-failed`, `search`, `view`, `download`, `export`, …
    pub action: String,
    /// On what: a query, a seq range, a mailbox — whatever the action concerns.
    pub target: String,
    /// From where: client address or `local`.
    pub origin: String,
    /// When it happened (RFC 3339, UTC), for an event that reached the log later than it
    /// happened: a spooled event, whose leaf time is when the server took it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The spool file's id (32 lower-case hex digits, random), for a spooled event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl AuditEvent {
    /// An event that happens now and is appended now (no `at`, no spool `id`).
    pub fn new(actor: &str, action: &str, target: String, origin: &str) -> AuditEvent {
        AuditEvent {
            actor: actor.into(),
            action: action.into(),
            target,
            origin: origin.into(),
            ..AuditEvent::default()
        }
    }

    /// A successful login: `user` is the account's name, `door` the front door (`imap`, `web`).
    pub fn login(user: &str, door: &str, origin: IpAddr) -> AuditEvent {
        AuditEvent {
            actor: printable(user),
            action: "login".into(),
            target: printable(door),
            origin: origin.to_string(),
            ..AuditEvent::default()
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
            ..AuditEvent::default()
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
            ..AuditEvent::default()
        }
    }

    /// The log went back to its last durable record after a failed fsync.
    pub fn recovery_rewind(rewound: &crate::store::Rewound) -> AuditEvent {
        AuditEvent {
            actor: "mailvault".into(),
            action: "recovery-rewind".into(),
            target: rewound.to_string(),
            origin: "local".into(),
            ..AuditEvent::default()
        }
    }
}

impl AuditEvent {
    /// Messages read through a view (contents, headers or structure): one event per command
    /// however many messages it named. `set` is the message set as the client wrote it
    /// (`1:*`; `uid` says whether its numbers are UIDs), `uids` the UIDs it named, ascending.
    /// The target reads `imap mailbox INBOX set 1:* messages 3 uids 4:6,9`; UIDs whose ranges
    /// would take more than [`MAX_UID_LIST_BYTES`] are given as the span they lie in
    /// (`uids within 4:9000`): the mailbox and the set name the rest.
    pub fn view(
        actor: &str,
        door: &str,
        origin: IpAddr,
        mailbox: &str,
        set: &str,
        uid: bool,
        uids: &[u64],
    ) -> AuditEvent {
        let set = bounded(set, MAX_SET_BYTES);
        let listed = match uid_ranges(uids, MAX_UID_LIST_BYTES) {
            Some(ranges) => format!("uids {ranges}"),
            None => format!(
                "uids within {}:{}",
                uids.first().copied().unwrap_or(0),
                uids.last().copied().unwrap_or(0)
            ),
        };
        let kind = if uid { "uid-set" } else { "set" };
        AuditEvent {
            actor: printable(actor),
            action: "view".into(),
            target: format!(
                "{} mailbox {} {kind} {set} messages {} {listed}",
                printable(door),
                bounded(mailbox, MAX_SET_BYTES),
                uids.len()
            ),
            origin: origin.to_string(),
            ..AuditEvent::default()
        }
    }

    /// A spool file the server could not take in: moved to `audit-spool/rejected/` as
    /// `kept`, for `reason`.
    pub fn spool_rejected(file: &str, kept: &str, reason: &str) -> AuditEvent {
        AuditEvent::new(
            "mailvault",
            "spool-rejected",
            format!(
                "audit-spool/{} moved to audit-spool/rejected/{} reason={}",
                printable(file),
                printable(kept),
                bounded(reason, 512)
            ),
            "local",
        )
    }
}

/// Most bytes of a message set kept in a `view` record.
pub const MAX_SET_BYTES: usize = 512;

/// Most bytes of the UID ranges a `view` record lists.
pub const MAX_UID_LIST_BYTES: usize = 1024;

/// `uids` (ascending) as IMAP ranges `4:6,9`, or `None` if that takes more than `max` bytes.
fn uid_ranges(uids: &[u64], max: usize) -> Option<String> {
    Some(compact_set(uids)).filter(|listed| listed.len() <= max)
}

/// Numbers as an IMAP sequence set, each run of consecutive ascending numbers as one range:
/// ascending, distinct numbers give `3:7,9,12:13` (`view` records, ESEARCH ALL); a sort order
/// `5,3,4,2,1` gives `5,3:4,2,1` (ESORT ALL, RFC 5267 §3.2: no descending ranges).
pub fn compact_set(sorted: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while sorted.get(i + 1).is_some_and(|n| Some(*n) == end.checked_add(1)) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Control characters replaced, at most `max` bytes (cut at a character boundary, marked).
fn bounded(text: &str, max: usize) -> String {
    let mut visible: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if visible.len() > max {
        let mut end = max;
        while !visible.is_char_boundary(end) {
            end -= 1;
        }
        visible.truncate(end);
        visible.push('…');
    }
    visible
}

/// Most bytes of a query kept in a `search` record; a longer one is cut and ends in `…`.
pub const MAX_QUERY_BYTES: usize = 2048;

/// A query as a `search` record keeps it: control characters (line breaks of literals
/// included) replaced, at most [`MAX_QUERY_BYTES`], cut at a character boundary and marked.
pub fn query_text(query: &str) -> String {
    bounded(query, MAX_QUERY_BYTES)
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
    fn a_view_event_names_the_set_as_written_the_count_and_the_uids() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let e = AuditEvent::view("alice", "imap", ip, "INBOX", "1:*", false, &[4, 5, 6, 9]);
        assert_eq!(e.action, "view");
        assert_eq!(e.target, "imap mailbox INBOX set 1:* messages 4 uids 4:6,9");
        let many: Vec<u64> = (1..=2000).map(|u| u * 2).collect();
        let e = AuditEvent::view("alice", "imap", ip, "INBOX", "1:*", true, &many);
        assert_eq!(
            e.target,
            "imap mailbox INBOX uid-set 1:* messages 2000 uids within 2:4000"
        );
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
