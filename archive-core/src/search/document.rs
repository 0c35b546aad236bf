//! One tantivy document per message: the extracted fields, every delivery's envelope, and the
//! stored summary a hit is made from.

use std::collections::BTreeSet;

use tantivy::TantivyDocument;

use super::extract::{domains, normalize_address, sender_domain, MailFields, Mailbox};
use super::schema::{view_term, Fields};
use crate::envelope::Envelope;
use crate::index::kv::Location;
use crate::log::record::{Leaf, RecordKind};

/// One delivery of a message: the message record itself or a later arrival record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// Seq of the message or arrival record.
    pub seq: u64,
    /// `message` (the record holding the bytes) or `arrival` (a later delivery).
    pub kind: String,
    /// Receive time, microseconds since the Unix epoch (UTC).
    pub received_us: i64,
    /// Envelope sender (MAIL FROM), lower-cased; empty for the null sender.
    pub mail_from: String,
    /// Envelope recipients (decoded originals when journaling encoded them), lower-cased.
    pub recipients: Vec<String>,
}

impl Delivery {
    /// The delivery a message or arrival leaf records. An envelope that does not decode
    /// yields a delivery without addresses (the record still counts).
    pub fn of(leaf: &Leaf) -> Delivery {
        let envelope = leaf.envelope().and_then(|e| e.ok()).unwrap_or_default();
        Delivery::with_envelope(leaf, &envelope)
    }

    fn with_envelope(leaf: &Leaf, envelope: &Envelope) -> Delivery {
        let text = |b: &[u8]| normalize_address(&String::from_utf8_lossy(b));
        let mut recipients: Vec<String> = envelope
            .recipients()
            .into_iter()
            .map(text)
            .filter(|r| !r.is_empty())
            .collect();
        recipients.dedup();
        Delivery {
            seq: leaf.seq,
            kind: match leaf.kind() {
                RecordKind::Arrival => "arrival",
                _ => "message",
            }
            .into(),
            received_us: leaf.time_us,
            mail_from: text(&envelope.mail_from),
            recipients,
        }
    }
}

/// What is stored with each document: everything a hit shows and everything needed to
/// filter it for a principal.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Seq of the message record.
    pub seq: u64,
    /// Where the message record is (segment, offset, length), for snippets and arrivals.
    pub location: [u64; 3],
    /// Raw size in bytes.
    pub size: u64,
    /// Date header (Unix seconds), or the receive time when there is none.
    pub date: i64,
    /// Whether `date` is the receive time because the Date header was missing or broken.
    #[serde(default)]
    pub date_is_received: bool,
    /// Subject.
    pub subject: String,
    /// Header From/Sender.
    pub from: Vec<Mailbox>,
    /// Header To.
    pub to: Vec<Mailbox>,
    /// Header Cc.
    pub cc: Vec<Mailbox>,
    /// Header Bcc.
    pub bcc: Vec<Mailbox>,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Attachment file names (unnamed attachments as their MIME type).
    pub attachments: Vec<String>,
    /// Every delivery, in log order.
    pub deliveries: Vec<Delivery>,
}

impl Summary {
    /// The location as the log reader wants it.
    pub fn location(&self) -> Location {
        Location {
            segment: self.location[0],
            offset: self.location[1],
            len: self.location[2],
            kind: RecordKind::Message,
        }
    }

    /// Addresses named in the To, Cc or Bcc header: every reader of the message sees them.
    pub fn header_recipients(&self) -> BTreeSet<&str> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .filter_map(|m| m.address.as_deref())
            .collect()
    }
}

/// Builds the document of a message from its fields and deliveries (at least the message
/// record's own).
pub fn build(
    f: &Fields,
    mail: &MailFields,
    seq: u64,
    location: Location,
    size: u64,
    deliveries: Vec<Delivery>,
) -> (TantivyDocument, Summary) {
    let mut doc = TantivyDocument::default();
    let received_us = deliveries.first().map_or(0, |d| d.received_us);
    let date = mail.date.unwrap_or(received_us.div_euclid(1_000_000));
    doc.add_u64(f.seq, seq);
    doc.add_i64(f.date, date);
    doc.add_u64(f.size, size);

    doc.add_text(f.subject, &mail.subject);
    doc.add_text(f.body, &mail.body);
    doc.add_text(f.header, &mail.header);
    for a in &mail.attachments {
        if let Some(name) = &a.name {
            doc.add_text(f.filename, name);
        }
        doc.add_text(f.attachment_type, &a.mime);
    }
    if let Some(list) = &mail.list_id {
        doc.add_text(f.list_text, list);
    }
    if let Some(id) = &mail.message_id {
        doc.add_text(f.msgid, id);
    }
    for id in &mail.references {
        doc.add_text(f.msgid, id);
    }
    if !mail.attachments.is_empty() {
        doc.add_text(f.flags, "attachment");
    }
    if !mail.parsed {
        doc.add_text(f.flags, "unparsed");
    }

    let mut scope_addr = BTreeSet::new();
    let mut header_domain = BTreeSet::new();
    let roles = [
        (&mail.from, f.from_text, Some(f.from_addr), true),
        (&mail.to, f.to_text, Some(f.to_addr), true),
        (&mail.cc, f.cc_text, Some(f.cc_addr), true),
        (&mail.bcc, f.bcc_text, Some(f.bcc_addr), true),
        (&mail.reply_to, f.reply_to_text, None, false),
    ];
    for (boxes, text, addr, grants_scope) in roles {
        for m in boxes.iter() {
            if let Some(name) = &m.name {
                doc.add_text(text, name);
            }
            if let Some(a) = &m.address {
                doc.add_text(text, a);
                if let Some(field) = addr {
                    doc.add_text(field, a);
                }
                header_domain.extend(domains(a));
                if grants_scope {
                    scope_addr.insert(a.clone());
                }
            }
        }
    }
    for d in &header_domain {
        doc.add_text(f.header_domain, d);
    }
    if let Some(d) = sender_domain(&mail.from) {
        doc.add_text(f.from_domain, &d);
    }

    let public: BTreeSet<&str> = mail
        .to
        .iter()
        .chain(&mail.cc)
        .chain(&mail.bcc)
        .filter_map(|m| m.address.as_deref())
        .collect();
    let mut env_from = BTreeSet::new();
    let mut env_rcpt = BTreeSet::new();
    let mut env_blind = BTreeSet::new();
    let mut env_domain = BTreeSet::new();
    let mut views = BTreeSet::new();
    for d in &deliveries {
        let sender = d.mail_from.as_str();
        let sender_domains = domains(sender);
        if !sender.is_empty() {
            env_from.insert(sender.to_string());
            scope_addr.insert(sender.to_string());
            views.insert(view_term(sender, 'f', sender));
            for dom in &sender_domains {
                views.insert(view_term(sender, 'd', dom));
            }
        }
        env_domain.extend(sender_domains.iter().cloned());
        for r in &d.recipients {
            let blind = !public.contains(r.as_str());
            let r_domains = domains(r);
            env_rcpt.insert(r.clone());
            scope_addr.insert(r.clone());
            env_domain.extend(r_domains.iter().cloned());
            if blind {
                env_blind.insert(r.clone());
            }
            // The sender sees whom they sent to, blind copies included…
            if !sender.is_empty() {
                views.insert(view_term(sender, 'r', r));
                if blind {
                    views.insert(view_term(sender, 'b', r));
                }
                for dom in &r_domains {
                    views.insert(view_term(sender, 'd', dom));
                }
            }
            // …a recipient sees the sender and themselves, never the other blind copies.
            if !sender.is_empty() {
                views.insert(view_term(r, 'f', sender));
            }
            views.insert(view_term(r, 'r', r));
            if blind {
                views.insert(view_term(r, 'b', r));
            }
            for dom in sender_domains.iter().chain(&r_domains) {
                views.insert(view_term(r, 'd', dom));
            }
        }
    }
    let add_all = |doc: &mut TantivyDocument, field, values: &BTreeSet<String>| {
        for v in values {
            doc.add_text(field, v);
        }
    };
    add_all(&mut doc, f.env_from, &env_from);
    add_all(&mut doc, f.env_rcpt, &env_rcpt);
    add_all(&mut doc, f.env_blind, &env_blind);
    add_all(&mut doc, f.env_domain, &env_domain);
    add_all(&mut doc, f.env_view, &views);
    let scope_domain: BTreeSet<String> = scope_addr.iter().flat_map(|a| domains(a)).collect();
    add_all(&mut doc, f.scope_addr, &scope_addr);
    add_all(&mut doc, f.scope_domain, &scope_domain);

    let summary = Summary {
        seq,
        location: [location.segment, location.offset, location.len],
        size,
        date,
        date_is_received: mail.date.is_none(),
        subject: mail.subject.clone(),
        from: mail.from.clone(),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
        bcc: mail.bcc.clone(),
        message_id: mail.message_id.clone(),
        attachments: mail
            .attachments
            .iter()
            .map(|a| a.name.clone().unwrap_or_else(|| a.mime.clone()))
            .collect(),
        deliveries,
    };
    // Serializing plain data cannot fail; an empty summary would only hide the hit's details.
    doc.add_bytes(f.summary, &serde_json::to_vec(&summary).unwrap_or_default());
    (doc, summary)
}
