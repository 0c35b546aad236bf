//! AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959). imap-next decodes the base64;
//! after each step the answer must go through `authenticate_continue`/`_finish`, never
//! `enqueue_status`, or its state machine keeps waiting for more data.

use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::response::CommandContinuationRequest;
use imap_next::types::CommandAuthenticate;

use super::login::{verify, Verdict};
use crate::session::{bad, code, no, Closed, Conn, Flow, Session};

pub(crate) async fn start(s: &mut Session, c: &mut Conn, cmd: CommandAuthenticate) -> Result<Flow, Closed> {
    let CommandAuthenticate {
        tag,
        mechanism,
        initial_response,
    } = cmd;
    let verdict = if s.user.is_some() {
        bad(tag, "already logged in").into()
    } else if !matches!(mechanism, AuthMechanism::Plain) {
        no(tag, Some(code("CANNOT")), "only AUTHENTICATE PLAIN is supported").into()
    } else if let Some(ir) = initial_response {
        plain(s, tag, ir.declassify())
    } else {
        s.auth_tag = Some(tag);
        let h = c
            .server
            .authenticate_continue(CommandContinuationRequest::base64(Vec::new()))
            .map_err(|_| Closed)?;
        return c.drive_to(h).await.map(|_| Flow::Continue);
    };
    finish(c, verdict).await
}

pub(crate) async fn data(
    s: &mut Session,
    c: &mut Conn,
    data: AuthenticateData<'static>,
) -> Result<Flow, Closed> {
    let Some(tag) = s.auth_tag.take() else {
        return Err(Closed);
    };
    let verdict = match data {
        AuthenticateData::Continue(d) => plain(s, tag, d.declassify()),
        AuthenticateData::Cancel => bad(tag, "AUTHENTICATE cancelled").into(),
    };
    finish(c, verdict).await
}

/// Sends the tagged answer (after a BYE if the login ends the connection, as LOGIN does).
async fn finish(c: &mut Conn, verdict: Verdict) -> Result<Flow, Closed> {
    if let Some(why) = verdict.bye {
        c.bye(why).await?;
    }
    let h = c.server.authenticate_finish(verdict.status).map_err(|_| Closed)?;
    c.drive_to(h).await?;
    Ok(if verdict.bye.is_some() {
        Flow::Close
    } else {
        Flow::Continue
    })
}

/// `authzid NUL authcid NUL password`; an authzid other than the user is refused (no
/// proxy logins into someone else's archive).
fn plain(s: &mut Session, tag: imap_next::imap_types::core::Tag<'static>, payload: &[u8]) -> Verdict {
    let fields: Vec<&[u8]> = payload.split(|b| *b == 0).collect();
    let [authz, user, password] = fields.as_slice() else {
        return bad(tag, "malformed PLAIN credentials").into();
    };
    let (Ok(authz), Ok(user), Ok(password)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return bad(tag, "PLAIN credentials must be UTF-8").into();
    };
    if !authz.is_empty() && authz != user {
        return no(
            tag,
            Some(code("AUTHORIZATIONFAILED")),
            "cannot act as another user",
        )
        .into();
    }
    verify(s, tag, user, password)
}
