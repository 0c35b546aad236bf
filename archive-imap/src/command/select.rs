//! SELECT and EXAMINE: open a view. SELECT and EXAMINE are audited (who opened which
//! mailbox), as every access is.
//!
//! SELECT answers `[READ-WRITE]` with `PERMANENTFLAGS ()`, EXAMINE `[READ-ONLY]`. Nothing in
//! a view can change either way: with no permanent flags, RFC 3501 §7.1 lets a server ignore
//! a STORE (`store.rs`), and EXPUNGE finds no `\Deleted` message (`expunge.rs`); every other
//! change is refused (`refused.rs`). Dovecot says `[READ-ONLY]` to a SELECT its read-only ACL
//! protects, and so did this server until issue #14: offlineimap's default sync SELECTs, and
//! its imaplib2 then raises "mailbox status changed to READ-ONLY" on the second flag change
//! it pushes in a run and fails the folder (against Dovecot as well). Every successful SELECT reports HIGHESTMODSEQ (RFC 7162
//! §3.1.2.1, `condstore`); the CONDSTORE parameter enables CONDSTORE; a SELECT that closes
//! a selected mailbox says so first with `* OK [CLOSED]` (RFC 7162 §3.2.11). QRESYNC is not
//! offered, so its parameter is BAD.

use std::num::NonZeroU32;

use archive_core::views::View;
use imap_next::imap_types::command::SelectParameter;
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::flag::Flag;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status};

use super::{mailbox_name, Done};
use crate::condstore::highest_modseq;
use crate::session::{bad, blocking, code, status, Closed, Conn, Kind, Selected, Session};

/// A refusal before the tag is known.
pub(crate) struct Refusal {
    code: Option<Code<'static>>,
    text: String,
}

impl Refusal {
    pub fn with_tag(self, tag: Tag<'static>) -> Status<'static> {
        status(Kind::No, Some(tag), self.code, &self.text)
    }
}

/// The view of `name` for the session's principal, with its UIDNEXT as an IMAP number.
pub(crate) fn open_view(s: &Session, name: &str) -> Result<(View, NonZeroU32), Refusal> {
    let Some(user) = &s.user else {
        return Err(Refusal {
            code: None,
            text: "log in first".into(),
        });
    };
    let view = match blocking(|| s.store.view(&user.principal, name)) {
        Ok(v) => v,
        Err(e) => {
            // NoSuchMailbox: the same answer whether or not the name exists for someone else.
            let (code, text) = crate::failure::store_failure(&e, "open a mailbox");
            return Err(Refusal { code, text });
        }
    };
    // IMAP UIDs are 32-bit; the log's seqs are not. Refuse rather than wrap.
    let uid_next = u32::try_from(view.uid_next())
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(Refusal {
            code: Some(code("LIMIT")),
            text: "the archive has outgrown 32-bit IMAP UIDs".into(),
        })?;
    Ok((view, uid_next))
}

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    mailbox: Mailbox<'static>,
    parameters: Vec<SelectParameter>,
    examine: bool,
) -> Result<Done, Closed> {
    if parameters
        .iter()
        .any(|p| matches!(p, SelectParameter::QResync { .. }))
    {
        return Done::reply(bad(
            tag,
            "QRESYNC is not offered (ENABLE QRESYNC first, RFC 7162)",
        ));
    }
    // RFC 3501: a failed SELECT leaves no mailbox selected. RFC 7162 §3.2.11: everything
    // before CLOSED was about the mailbox closed now.
    if s.selected.take().is_some() {
        c.status(status(
            Kind::Ok,
            None,
            Some(Code::Closed),
            "previous mailbox closed",
        ))
        .await?;
    }
    let name = mailbox_name(&mailbox);
    let (view, uid_next) = match open_view(s, &name) {
        Ok(v) => v,
        Err(refusal) => return Done::reply(refusal.with_tag(tag)),
    };
    let action = if examine { "examine" } else { "select" };
    if let Err((code, why)) = s.audit(action, format!("imap mailbox {}", view.mailbox())) {
        return Done::reply(status(Kind::No, Some(tag), code, &why));
    }
    let validity = NonZeroU32::new(view.uid_validity()).unwrap_or(NonZeroU32::MIN);
    let exists = u32::try_from(view.len()).unwrap_or(u32::MAX);
    c.data(Data::Flags(vec![Flag::Seen])).await?;
    c.data(Data::Exists(exists)).await?;
    c.data(Data::Recent(0)).await?;
    let untagged = [
        (
            Code::PermanentFlags(Vec::new()),
            "no permanent flags: read-only archive",
        ),
        (Code::UidValidity(validity), "UIDs valid"),
        (Code::UidNext(uid_next), "predicted next UID"),
        (Code::HighestModSeq(highest_modseq(&view)), "highest mod-sequence"),
    ];
    for (code, text) in untagged {
        c.status(status(Kind::Ok, None, Some(code), text)).await?;
    }
    s.selected = Some(Selected { view });
    if parameters.contains(&SelectParameter::CondStore) {
        s.condstore = true;
    }
    let (code, text) = if examine {
        (Code::ReadOnly, "EXAMINE completed; the archive is read-only")
    } else {
        (Code::ReadWrite, "SELECT completed; the archive keeps no flags")
    };
    Done::reply(status(Kind::Ok, Some(tag), Some(code), text))
}
