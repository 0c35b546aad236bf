//! CONDSTORE (RFC 7162 §3.1) for mailboxes whose messages never change.
//!
//! A mod-sequence says when a message's metadata last changed, and HIGHESTMODSEQ is the
//! highest of a mailbox: a client that cached a mailbox at HIGHESTMODSEQ `h` asks for what
//! changed since (`FETCH 1:* (FLAGS) (CHANGEDSINCE h)`, `SEARCH MODSEQ h`) and, when SELECT
//! still reports `h`, knows that nothing did. In the archive a message's metadata never
//! changes once it is in a view (every message is `\Seen`, STORE changes nothing, nothing is
//! expunged): the only change a mailbox sees is a new message. So:
//!
//! - a message's mod-sequence is fixed when it appears and must exceed every HIGHESTMODSEQ
//!   reported before, or CHANGEDSINCE would not find it: its UID + 1, since a message that
//!   appears gets a UID at least the UIDNEXT reported before it (`View::uid_next`);
//! - HIGHESTMODSEQ is the highest of them, UID of the last message + 1: UIDNEXT (1 for an
//!   empty mailbox; mod-sequences are at least 1). It moves exactly when UIDNEXT does,
//!   when a message appears, and never for audit records or other people's mail.
//!
//! Both come from the log, so they are the same in every session and after every restart;
//! UIDVALIDITY changes with the view's definition, and then every cache starts over anyway.
//! A STORE changes nothing, so it changes no mod-sequence either: `STORE … (UNCHANGEDSINCE
//! n)` succeeds (changing nothing) for messages whose mod-sequence is at most `n` and fails
//! (`[MODIFIED …]`) for the others, as RFC 7162 §3.1.3 says; `UNCHANGEDSINCE 0` fails for
//! all.

use std::num::NonZeroU64;

use archive_core::views::View;

/// The mod-sequence of the message with UID `uid` (a log seq): `uid + 1`.
pub(crate) fn modseq(uid: u64) -> NonZeroU64 {
    NonZeroU64::new(uid.saturating_add(1)).unwrap_or(NonZeroU64::MIN)
}

/// HIGHESTMODSEQ of `view`: its UIDNEXT, the mod-sequence of its last message (1 if empty).
pub(crate) fn highest_modseq(view: &View) -> NonZeroU64 {
    NonZeroU64::new(view.uid_next()).unwrap_or(NonZeroU64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_message_is_above_every_highestmodseq_before_it() {
        // UIDNEXT before a message with UID u appeared was at most u.
        for (uid_next_before, uid) in [(1u64, 1u64), (1, 7), (8, 8), (8, 1 << 40)] {
            assert!(uid >= uid_next_before);
            assert!(modseq(uid).get() > uid_next_before);
        }
        assert_eq!(modseq(0).get(), 1);
        assert_eq!(modseq(u64::MAX).get(), u64::MAX);
    }
}
