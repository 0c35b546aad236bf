//! `GET /messages/{seq}`: one message as the viewer may see it — headers (the envelope for
//! auditors), the text body escaped with its links leading through `/out`, the HTML body in a
//! sandboxed frame (`html_body`), attachments, the conversation, and the integrity panel.
//! Read through the API's own `read` (scope check, then the `view` audit record), so a
//! message outside the scope is the same 404 page as one that does not exist.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use archive_core::mime_parts;
use archive_core::search::Mailbox;
use archive_core::views::Integrity;

use super::html_body::{linkify, sanitize};
use super::{date_text, error_page, html, size_text, time_text, Page, Viewer};
use crate::api::messages::read;
use crate::auth::AppState;

/// Most bytes of a body shown on the page (the original has all of it).
pub const MAX_BODY_BYTES: usize = 1 << 20;

struct Delivery {
    kind: String,
    received: String,
    mail_from: String,
    recipients: String,
}

struct Attachment {
    n: usize,
    name: String,
    content_type: String,
    size: String,
}

struct ThreadRow {
    seq: u64,
    date: String,
    from: String,
    subject: String,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    page: Page,
    seq: u64,
    subject: String,
    from: String,
    to: String,
    cc: String,
    bcc: String,
    date: String,
    message_id: Option<String>,
    envelope: Vec<Delivery>,
    /// Escaped text with links through `/out`.
    text: Option<String>,
    text_is_preview: bool,
    truncated: bool,
    has_html: bool,
    remote_blocked: bool,
    attachments: Vec<Attachment>,
    thread: Vec<ThreadRow>,
    integrity: Integrity,
    received: String,
}

/// `GET /messages/{seq}`.
pub async fn page(State(state): State<AppState>, viewer: Viewer, Path(seq): Path<String>) -> Response {
    let Viewer { caller, page } = viewer;
    let principal = caller.principal.clone();
    let auditor = page.auditor;
    let no_subject = page.t.no_subject;
    let layout = page.clone();
    let built = read(
        &state,
        caller,
        &seq,
        "view",
        |_| Ok(String::new()),
        move |store, m| {
            let seq = m.hit.seq;
            // The message as `read` checked and read it: not read again for these two.
            let thread = store
                .thread_of(&principal, &m)
                .map_err(crate::error::ApiError::store)?;
            let integrity = store.integrity_of(&m);
            let bodies = mime_parts::bodies(&m.raw, MAX_BODY_BYTES);
            let remote_blocked = bodies.html.as_deref().is_some_and(|h| sanitize(h).blocked);
            let (text, text_is_preview) = match (&bodies.text, &bodies.html) {
                (Some(text), _) => (Some(linkify(text)), false),
                (None, Some(html)) => (Some(linkify(&html_preview(html))), true),
                (None, None) => (None, false),
            };
            let hit = m.hit;
            let envelope = if auditor {
                hit.deliveries
                    .iter()
                    .map(|d| Delivery {
                        kind: d.kind.clone(),
                        received: time_text(d.received_us),
                        mail_from: if d.mail_from.is_empty() {
                            "<>".into()
                        } else {
                            d.mail_from.clone()
                        },
                        recipients: d.recipients.join(", "),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let attachments = mime_parts::parts(&m.raw)
                .into_iter()
                .filter_map(|p| {
                    Some(Attachment {
                        n: p.attachment?,
                        name: p
                            .name
                            .unwrap_or_else(|| format!("attachment-{}", p.attachment.unwrap_or(0))),
                        content_type: p.content_type,
                        size: size_text(p.size),
                    })
                })
                .collect();
            Ok(MessagePage {
                page: layout,
                seq,
                subject: if hit.subject.trim().is_empty() {
                    no_subject.to_string()
                } else {
                    hit.subject.clone()
                },
                from: mailboxes(&hit.from),
                to: mailboxes(&hit.to),
                cc: mailboxes(&hit.cc),
                bcc: mailboxes(&hit.bcc),
                date: date_text(hit.date),
                message_id: hit.message_id.clone(),
                envelope,
                text,
                text_is_preview,
                truncated: bodies.truncated,
                has_html: bodies.html.is_some(),
                remote_blocked,
                attachments,
                thread: thread
                    .into_iter()
                    .map(|h| ThreadRow {
                        seq: h.seq,
                        date: date_text(h.date),
                        from: mailboxes(&h.from),
                        subject: if h.subject.trim().is_empty() {
                            no_subject.to_string()
                        } else {
                            h.subject
                        },
                    })
                    .collect(),
                received: time_text(m.received_us),
                integrity,
            })
        },
    )
    .await;
    match built {
        Ok(view) => html(StatusCode::OK, &view),
        Err(e) => error_page(&page, e),
    }
}

fn mailboxes(list: &[Mailbox]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A text version of an HTML body (for mail that has no text part).
fn html_preview(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 100).unwrap_or_default()
}
