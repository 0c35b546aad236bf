//! The fields of the tantivy index: one document per message record (per distinct content);
//! later deliveries (arrival records) update it. See docs/SEARCH.md §Index for what each
//! field holds and who may match it.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STORED,
};

use super::analysis::{EXACT, RAW, TEXT};

/// Bumped whenever fields or their analysis change meaning: an index of another version is
/// rebuilt from the log at open.
pub const SCHEMA_VERSION: u64 = 3;

/// Separates the parts of an `env_view` term (viewer, kind, value).
pub const VIEW_SEP: char = '\u{1f}';

/// Handles of every field.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// Seq of the message record (u64; indexed, fast, stored): the document's key.
    pub seq: Field,
    /// Date header, or the receive time if missing (Unix seconds, i64; fast).
    pub date: Field,
    /// Raw message size in bytes (u64; fast).
    pub size: Field,
    /// Everything shown in a hit and needed to filter it (JSON, stored).
    pub summary: Field,
    /// Subject: folded words and their marked stems, with positions.
    pub subject: Field,
    /// Body text and text attachments: folded words and their marked stems, with positions.
    pub body: Field,
    /// Attachment file names, folded words with positions.
    pub filename: Field,
    /// Every header field, name and value, as folded words (no positions): where IMAP TEXT
    /// looks for the candidates of a substring (`substring`).
    pub header: Field,
    /// Header From/Sender names and addresses as words.
    pub from_text: Field,
    /// Header To names and addresses as words.
    pub to_text: Field,
    /// Header Cc names and addresses as words.
    pub cc_text: Field,
    /// Header Bcc names and addresses as words.
    pub bcc_text: Field,
    /// Header Reply-To names and addresses as words.
    pub reply_to_text: Field,
    /// List-Id as words.
    pub list_text: Field,
    /// Header From/Sender addresses, exact.
    pub from_addr: Field,
    /// Header To addresses, exact.
    pub to_addr: Field,
    /// Header Cc addresses, exact.
    pub cc_addr: Field,
    /// Header Bcc addresses, exact.
    pub bcc_addr: Field,
    /// Domains (and parent domains) of every header address.
    pub header_domain: Field,
    /// The sender's domain: of the first From (else Sender) address, exactly, lower-cased
    /// (`fromdomain:`); fast, so facets count it by ordinal. At most one per document.
    pub from_domain: Field,
    /// Envelope senders of every delivery (auditors only).
    pub env_from: Field,
    /// Envelope recipients of every delivery (auditors only).
    pub env_rcpt: Field,
    /// Envelope recipients named in no To/Cc/Bcc header: blind copies (auditors only).
    pub env_blind: Field,
    /// Domains of envelope addresses (auditors only).
    pub env_domain: Field,
    /// What each envelope party may match: `viewer␟kind␟value` (users).
    pub env_view: Field,
    /// Every address that makes the message visible to a user who has it.
    pub scope_addr: Field,
    /// Every domain (with parents) that puts the message in a domain auditor's scope.
    pub scope_domain: Field,
    /// Message-ID, In-Reply-To and References ids, exact.
    pub msgid: Field,
    /// Attachment MIME types, exact.
    pub attachment_type: Field,
    /// Flags: `attachment` (has one), `unparsed` (mail-parser made nothing of it).
    pub flags: Field,
}

impl Fields {
    /// Builds the schema and its field handles.
    pub fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let positions = |analyzer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(analyzer)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
        };
        let raw = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(RAW)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        );
        // Dates and sizes are only filtered by range and sorted: fast fields serve both, and
        // an inverted index of nearly unique values would only cost time and space.
        let fast = NumericOptions::default().set_fast();
        let fields = Fields {
            seq: b.add_u64_field("seq", fast.clone().set_indexed().set_stored()),
            date: b.add_i64_field("date", fast.clone()),
            size: b.add_u64_field("size", fast),
            summary: b.add_bytes_field("summary", STORED),
            subject: b.add_text_field("subject", positions(TEXT)),
            body: b.add_text_field("body", positions(TEXT)),
            filename: b.add_text_field("filename", positions(EXACT)),
            header: b.add_text_field(
                "header",
                TextOptions::default().set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(EXACT)
                        .set_index_option(IndexRecordOption::Basic)
                        .set_fieldnorms(false),
                ),
            ),
            from_text: b.add_text_field("from_text", positions(EXACT)),
            to_text: b.add_text_field("to_text", positions(EXACT)),
            cc_text: b.add_text_field("cc_text", positions(EXACT)),
            bcc_text: b.add_text_field("bcc_text", positions(EXACT)),
            reply_to_text: b.add_text_field("reply_to_text", positions(EXACT)),
            list_text: b.add_text_field("list_text", positions(EXACT)),
            from_addr: b.add_text_field("from_addr", raw.clone()),
            to_addr: b.add_text_field("to_addr", raw.clone()),
            cc_addr: b.add_text_field("cc_addr", raw.clone()),
            bcc_addr: b.add_text_field("bcc_addr", raw.clone()),
            header_domain: b.add_text_field("header_domain", raw.clone()),
            // tantivy's own `raw` for the column: the value as given (already lower-cased).
            from_domain: b.add_text_field("from_domain", raw.clone().set_fast("raw")),
            env_from: b.add_text_field("env_from", raw.clone()),
            env_rcpt: b.add_text_field("env_rcpt", raw.clone()),
            env_blind: b.add_text_field("env_blind", raw.clone()),
            env_domain: b.add_text_field("env_domain", raw.clone()),
            env_view: b.add_text_field("env_view", raw.clone()),
            scope_addr: b.add_text_field("scope_addr", raw.clone()),
            scope_domain: b.add_text_field("scope_domain", raw.clone()),
            msgid: b.add_text_field("msgid", raw.clone()),
            attachment_type: b.add_text_field("attachment_type", raw.clone()),
            flags: b.add_text_field("flags", raw),
        };
        (b.build(), fields)
    }
}

/// The `env_view` term saying `viewer` may match `value` as `kind`
/// (`f` sender, `r` recipient, `b` blind recipient, `d` domain).
pub fn view_term(viewer: &str, kind: char, value: &str) -> String {
    format!("{viewer}{VIEW_SEP}{kind}{VIEW_SEP}{value}")
}
