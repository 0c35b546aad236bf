//! The answer to a failure of the store: one place decides which RFC 5530 response code and
//! text a client gets, from whose fault the error is ([`archive_core::Fault`]), so an fsync
//! failure is never "no such mailbox" and damage is never "try again". The client gets a
//! short, fixed text (nothing from the store's internals); the server log gets the error.

use archive_core::{Error, Fault};
use imap_next::imap_types::response::Code;

use crate::session::code;

/// `NO [code] text` for a store error met while `doing` (a command name, for the log).
pub(crate) fn store_failure(e: &Error, doing: &str) -> (Option<Code<'static>>, String) {
    match e.fault() {
        Fault::NotFound => {
            let what = match e {
                Error::NoSuchMailbox(_) => "no such mailbox",
                _ => "no such message",
            };
            (Some(code("NONEXISTENT")), what.into())
        }
        // The request's own fault: its text says what to change (no internals in it).
        Fault::Request => (Some(code("CANNOT")), e.to_string()),
        Fault::Limit => match e {
            Error::SearchStopped(archive_core::search::Stopped::Cancelled) => {
                (None, "search cancelled".into())
            }
            _ => (Some(code("LIMIT")), "search took too long; narrow it down".into()),
        },
        Fault::Unavailable => {
            tracing::error!(error = %e, doing, "the store failed; answered NO [UNAVAILABLE]");
            (
                Some(code("UNAVAILABLE")),
                "the archive cannot answer right now; try again later".into(),
            )
        }
        Fault::Damaged => {
            tracing::error!(error = %e, doing, "stored data or an internal rule failed; answered NO [SERVERBUG]");
            (
                Some(code("SERVERBUG")),
                "the archive could not answer this; the server log says why".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: &Error) -> String {
        store_failure(e, "test")
            .0
            .map(|c| format!("{c:?}"))
            .unwrap_or_default()
    }

    #[test]
    fn each_fault_gets_its_own_code() {
        let io = Error::io("/x", std::io::Error::other("fsync failed"));
        assert!(code_of(&io).contains("UNAVAILABLE"), "{}", code_of(&io));
        let unusable = Error::Unusable("an fsync failed".into());
        assert!(code_of(&unusable).contains("UNAVAILABLE"));
        let missing = Error::NoSuchMailbox("Nope".into());
        assert!(code_of(&missing).contains("NONEXISTENT"));
        assert_eq!(store_failure(&missing, "test").1, "no such mailbox");
        let corrupt = Error::Corrupt {
            seq: 7,
            segment: "00000001.seg".into(),
            offset: 12,
            reason: "bad CRC".into(),
        };
        assert!(code_of(&corrupt).contains("SERVERBUG"));
        // A record the disk cannot read (EIO) stays unreadable until an operator restores its
        // segment: not "try again later".
        let unreadable = Error::Unreadable {
            seq: Some(7),
            segment: "00000001.seg".into(),
            offset: 12,
            source: std::io::Error::from_raw_os_error(5),
        };
        assert!(code_of(&unreadable).contains("SERVERBUG"));
        let stopped = Error::SearchStopped(archive_core::search::Stopped::Deadline);
        assert!(code_of(&stopped).contains("LIMIT"));
        let rejected = Error::Rejected("too big".into());
        assert!(code_of(&rejected).contains("CANNOT"));
    }

    #[test]
    fn internals_stay_in_the_log() {
        let io = Error::io(
            "/var/lib/mailvault/log/00000003.seg",
            std::io::Error::other("EIO"),
        );
        let (_, text) = store_failure(&io, "test");
        assert!(!text.contains("/var/lib"), "{text}");
    }
}
