//! `GET /api/v1/messages/{seq}` and its `raw`, `attachments/{n}` and `proof`: one message by
//! its seq, read through `Store::message_for` (the caller's scope, checked in the index and
//! again on the log's own records). A message outside the scope and one that does not exist
//! get the same 404. Every answer that carries mail is an audit record first: `view`, `raw`,
//! `download` (an attachment) and `proof`, each naming the seq.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use archive_core::audit::AuditEvent;
use archive_core::mime_parts::{self, Part};
use archive_core::views::ScopedMessage;
use archive_core::Store;

use super::{date_source, date_text, mailboxes, time_text};
use crate::auth::{AppState, Caller};
use crate::error::{blocking, ApiError};

/// What the caller may see of one message.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MessageJson {
    /// The message record's seq.
    pub seq: u64,
    /// When the archive received it (RFC 3339, UTC).
    pub received: String,
    /// Date header (RFC 3339, UTC), or the receive time without one.
    pub date: String,
    /// `header` or `received`.
    pub date_source: String,
    /// From (and Sender).
    pub from: Vec<String>,
    /// To.
    pub to: Vec<String>,
    /// Cc.
    pub cc: Vec<String>,
    /// Bcc header, and the blind envelope recipients the caller may see.
    pub bcc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Message-ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Raw size in bytes.
    pub size: u64,
    /// The deliveries (journal copies) the caller may see, with the envelope as they may
    /// see it.
    pub deliveries: Vec<DeliveryJson>,
    /// The MIME parts (empty for mail that does not parse as MIME; the raw bytes are there).
    pub parts: Vec<PartJson>,
}

/// One delivery.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryJson {
    /// The message or arrival record's seq.
    pub seq: u64,
    /// `message` or `arrival`.
    pub kind: String,
    /// Receive time (RFC 3339, UTC).
    pub received: String,
    /// Envelope sender (empty: the null sender).
    pub mail_from: String,
    /// Envelope recipients the caller may see.
    pub recipients: Vec<String>,
}

/// One MIME part.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PartJson {
    /// Position in the flat part list (0: the message).
    pub part: usize,
    /// `type/subtype`.
    pub content_type: String,
    /// File name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Decoded size in bytes.
    pub size: u64,
    /// Its number for `attachments/{n}`, if it is an attachment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<usize>,
}

impl From<Part> for PartJson {
    fn from(p: Part) -> PartJson {
        PartJson {
            part: p.part,
            content_type: p.content_type,
            name: p.name,
            size: p.size,
            attachment: p.attachment,
        }
    }
}

/// A seq from the path; anything else is the same 404 as a missing message.
pub(crate) fn seq_of(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(ApiError::no_such_message)
}

/// Reads message `seq` for the caller, records `action` with `detail` (after the scope check,
/// before anything leaves) and hands the message to `then`.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    caller: Caller,
    seq: &str,
    action: &'static str,
    detail: impl Fn(&ScopedMessage) -> Result<String, ApiError> + Send + 'static,
    then: impl FnOnce(&Store, ScopedMessage) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let seq = seq_of(seq)?;
    let store = state.store.clone();
    blocking(move || {
        let message = store
            .message_for(&caller.principal, seq)
            .map_err(ApiError::store)?;
        let target = format!("web seq {seq}{}", detail(&message)?);
        let event = AuditEvent::new(&caller.user, action, target, &caller.client.to_string());
        store.append_audit(&event).map_err(ApiError::store)?;
        then(&store, message)
    })
    .await
}

/// One message: headers, deliveries and parts.
#[utoipa::path(get, path = "/messages/{seq}", tag = "messages",
    params(("seq" = u64, Path, description = "The message record's seq (a hit's `seq`)")),
    responses(
        (status = 200, body = MessageJson),
        (status = 404, description = "no such message, or not the caller's: the same answer", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    ))]
pub async fn message(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Json<MessageJson>, ApiError> {
    let json = read(
        &state,
        caller,
        &seq,
        "view",
        |_| Ok(String::new()),
        |_, m| {
            let hit = m.hit;
            Ok(MessageJson {
                seq: hit.seq,
                received: time_text(m.received_us),
                date: date_text(hit.date),
                date_source: date_source(hit.date_is_received),
                from: mailboxes(&hit.from),
                to: mailboxes(&hit.to),
                cc: mailboxes(&hit.cc),
                bcc: mailboxes(&hit.bcc),
                subject: hit.subject,
                message_id: hit.message_id,
                size: hit.size,
                deliveries: hit
                    .deliveries
                    .into_iter()
                    .map(|d| DeliveryJson {
                        seq: d.seq,
                        kind: d.kind,
                        received: time_text(d.received_us),
                        mail_from: d.mail_from,
                        recipients: d.recipients,
                    })
                    .collect(),
                parts: mime_parts::parts(&m.raw)
                    .into_iter()
                    .map(PartJson::from)
                    .collect(),
            })
        },
    )
    .await?;
    Ok(Json(json))
}

/// Headers of every download: saved, never shown on the app's origin.
fn download(mut response: Response, content_type: &str, filename: &str) -> Response {
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    // At most 512 bytes of UTF-8, cut between characters: a name cut inside one would not
    // be UTF-8, and browsers would fall back to the ASCII name.
    let mut kept = 0;
    let cut: String = filename
        .chars()
        .take_while(|c| {
            kept += c.len_utf8();
            kept <= 512
        })
        .collect();
    let encoded = crate::pages::url_encode(&cut);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The message exactly as received (`message/rfc822`), as `mailvault show` prints it.
#[utoipa::path(get, path = "/messages/{seq}/raw", tag = "messages",
    params(("seq" = u64, Path, description = "The message record's seq")),
    responses(
        (status = 200, content_type = "message/rfc822", description = "the stored bytes, byte-exact"),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn raw(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    let (seq, bytes) = read(
        &state,
        caller,
        &seq,
        "raw",
        |_| Ok(String::new()),
        |_, m| Ok((m.hit.seq, m.raw)),
    )
    .await?;
    Ok(download(
        bytes.into_response(),
        "message/rfc822",
        &format!("{seq}.eml"),
    ))
}

/// Attachment `n` of a message, decoded.
#[utoipa::path(get, path = "/messages/{seq}/attachments/{n}", tag = "messages",
    params(
        ("seq" = u64, Path, description = "The message record's seq"),
        ("n" = usize, Path, description = "The attachment's number (a part's `attachment`), from 1"),
    ),
    responses(
        (status = 200, description = "the attachment, as a download"),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path((seq, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request("the attachment number is a number from 1"))?;
    let exists = move |m: &ScopedMessage| match mime_parts::attachment(&m.raw, n) {
        Some(_) => Ok(format!(" attachment {n}")),
        None => Err(ApiError::not_found("no such attachment")),
    };
    let (part, bytes) = read(&state, caller, &seq, "download", exists, move |_, m| {
        mime_parts::attachment(&m.raw, n).ok_or_else(|| ApiError::not_found("no such attachment"))
    })
    .await?;
    let name = part.name.clone().unwrap_or_else(|| format!("attachment-{n}"));
    let content_type = if part
        .content_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
    {
        part.content_type
    } else {
        "application/octet-stream".into()
    };
    Ok(download(bytes.into_response(), &content_type, &name))
}

/// The inclusion proof of the message's record in the newest signed checkpoint, as
/// `mailvault proof SEQ` prints it (docs/FORMAT.md): check it offline with the public key.
#[utoipa::path(get, path = "/messages/{seq}/proof", tag = "messages",
    params(("seq" = u64, Path, description = "The message record's seq")),
    responses(
        (status = 200, description = "the proof document (JSON)"),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn proof(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    let seq = seq_of(&seq)?;
    let store = state.store.clone();
    let document = blocking(move || {
        let document = store.proof_for(&caller.principal, seq).map_err(ApiError::store)?;
        let target = format!("web seq {seq} checkpoint {}", document.inclusion.tree_size);
        let event = AuditEvent::new(&caller.user, "proof", target, &caller.client.to_string());
        store.append_audit(&event).map_err(ApiError::store)?;
        serde_json::to_string_pretty(&document).map_err(|_| ApiError::task_failed())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], document + "\n").into_response())
}
