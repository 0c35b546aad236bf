//! Search keys answered by reading the messages, through `Store::view_message` (the one
//! read path for a principal, with its checks), on the search's blocking thread and within
//! its budget (checked before every message read).
//!
//! - Header keys (RFC 3501 §6.4.4 SUBJECT, HEADER): the field exists and its value contains
//!   the string, case-insensitively, after RFC 2047 decoding and unfolding (mail-parser's
//!   unstructured field parser, which also turns each run of white space into one space, as
//!   Dovecot compares). The index cannot say this: it holds words, not substrings, and only
//!   some fields.
//! - Address keys (FROM, TO, CC, BCC): the same, but compared with the field as its ENVELOPE
//!   structure reads (`mime::address_search_form`: comments, quoting and folding gone,
//!   names decoded), which is what RFC 3501 says these keys search.
//! - Sent dates (SENTBEFORE, SENTON, SENTSINCE): the day as written in the Date header, in
//!   the sender's zone (`Sun, 25 Mar 2007 00:00:00 +0200` is 25 March), as RFC 3501 means
//!   "the date"; without a usable Date, the message's INTERNALDATE in UTC, the day ON and
//!   SINCE use (Dovecot's SORT does the same; its SEARCH takes 1 January 1970). The index,
//!   which dates messages in UTC, narrows the messages to read: a written day is at most
//!   one day from the UTC day, so only messages within [`BAND`] days of the key's day are
//!   read, plus those seen through a later delivery, whose INTERNALDATE the index does not
//!   hold.
//! - TEXT and BODY as RFC 3501 substrings of the text the index is built from (decoded body
//!   text; for TEXT the header fields too), in the candidates the index gives for them.

use std::collections::HashMap;
use std::rc::Rc;

use archive_core::search::query::{DateOp, Node};
use archive_core::search::{body_text, header_text, usable_date};
use archive_core::views::ViewMessage;
use jiff::civil::Date;

use super::criteria::Failure;
use super::eval::Evaluator;
use crate::mime::address_search_form;
use crate::session::code;

/// A key answered by reading messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scan {
    /// SENTBEFORE, SENTON, SENTSINCE a day.
    Sent(SentOp, Date),
    /// Field `name` (lower case) is present and contains `value` (lower case).
    Header { name: String, value: String },
    /// Address field `name` (`from`, `to`, `cc` or `bcc`) is present and its address list
    /// contains `value` (lower case).
    Address { name: String, value: String },
    /// TEXT (`whole`) or BODY contains `value` (lower case).
    Text { whole: bool, value: String },
}

/// How a sent date compares with the key's day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SentOp {
    Before,
    On,
    Since,
}

/// Days between the UTC day the index holds and the day written in the Date header: the
/// index takes only zones within ±23:59 (`archive_core::search::usable_date`), so one day
/// would do; two leave room.
const BAND: i64 = 2;

/// Bytes of header fields kept for the other scans of one SEARCH (a Thunderbird quick
/// filter is `OR OR FROM x TO x SUBJECT x`: each message is read once).
const MAX_KEPT: usize = 16 << 20;

/// The fields the address keys search.
const ADDRESS_FIELDS: [&str; 4] = ["from", "to", "cc", "bcc"];

/// What the scans need of one message's header.
pub(crate) struct Fields {
    /// (name, value), lower case, in order.
    fields: Vec<(String, String)>,
    /// (name, address list as searched), lower case, for the [`ADDRESS_FIELDS`].
    addresses: Vec<(String, String)>,
    /// The sent day (days since 1970-01-01), as the module doc says.
    sent_day: i64,
}

impl Fields {
    fn parse(raw: &[u8], received_us: i64) -> Fields {
        let received_day = received_us.div_euclid(86_400_000_000);
        let Some(msg) = header_text::parse(raw) else {
            return Fields {
                fields: Vec::new(),
                addresses: Vec::new(),
                sent_day: received_day,
            };
        };
        let sent_day = usable_date(&msg)
            .map(|d| d.to_timestamp_local().div_euclid(86_400))
            .unwrap_or(received_day);
        let headers = header_text::fields(&msg);
        let mut fields = Vec::with_capacity(headers.len());
        let mut addresses = Vec::new();
        for h in headers {
            let name = h.name.as_str().to_ascii_lowercase();
            let written = header_text::written(h, raw);
            if ADDRESS_FIELDS.contains(&name.as_str()) {
                let unfolded: Vec<u8> = written
                    .iter()
                    .copied()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .collect();
                addresses.push((name.clone(), address_search_form(&unfolded).to_lowercase()));
            }
            fields.push((name, header_text::value(h, raw).to_lowercase()));
        }
        Fields {
            fields,
            addresses,
            sent_day,
        }
    }

    fn size(&self) -> usize {
        let pairs = self.fields.iter().chain(&self.addresses);
        pairs.map(|(n, v)| n.len() + v.len() + 64).sum()
    }

    /// The header as text, one `name: value` line per field (for TEXT), as the index's
    /// `header` field holds it (`header_text::text`), lower-cased.
    fn text(&self) -> String {
        self.fields.iter().map(|(n, v)| format!("{n}: {v}\n")).collect()
    }
}

/// Header fields of messages scans have read, by message index, within [`MAX_KEPT`].
#[derive(Default)]
pub(crate) struct Reads {
    kept: HashMap<usize, Rc<Fields>>,
    held: usize,
}

impl Evaluator<'_> {
    /// The messages among `within` that `scan` matches.
    pub(super) fn scan(&mut self, scan: &Scan, within: &[bool]) -> Result<Vec<bool>, Failure> {
        let mut out = vec![false; within.len()];
        match scan {
            Scan::Sent(op, day) => return self.sent(*op, *day, within),
            Scan::Header { name, value } => {
                for (i, slot) in out.iter_mut().enumerate().filter(|(i, _)| within[*i]) {
                    let fields = self.fields(i, None)?;
                    *slot = fields
                        .fields
                        .iter()
                        .any(|(n, v)| n == name && v.contains(value.as_str()));
                }
            }
            Scan::Address { name, value } => {
                for (i, slot) in out.iter_mut().enumerate().filter(|(i, _)| within[*i]) {
                    let fields = self.fields(i, None)?;
                    *slot = fields
                        .addresses
                        .iter()
                        .any(|(n, v)| n == name && v.contains(value.as_str()));
                }
            }
            Scan::Text { whole, value } => {
                for (i, slot) in out.iter_mut().enumerate().filter(|(i, _)| within[*i]) {
                    let message = self.read(i)?;
                    let mut text = body_text(&message.raw).to_lowercase();
                    if *whole {
                        text.push_str(&self.fields(i, Some(&message))?.text());
                    }
                    *slot = text.contains(value.as_str());
                }
            }
        }
        Ok(out)
    }

    fn sent(&mut self, op: SentOp, day: Date, within: &[bool]) -> Result<Vec<bool>, Failure> {
        let target = day_number(day);
        let shifted = |n: i64| day.checked_add(jiff::Span::new().days(n)).ok();
        let before = |d: Date| Node::Date(DateOp::Before, d);
        let not = |n: Node| Node::Not(Box::new(n));
        // Days [low, high) around the key's day, in UTC.
        let (low, high) = (shifted(-BAND), shifted(BAND + 1));
        let sure = match op {
            SentOp::Before => low.map(before),
            SentOp::Since => high.map(|d| not(before(d))),
            SentOp::On => None,
        };
        let band = match (low, high) {
            (Some(l), Some(h)) => Some(Node::And(vec![not(before(l)), before(h)])),
            (Some(l), None) => Some(not(before(l))),
            (None, Some(h)) => Some(before(h)),
            (None, None) => None,
        };
        let sure = match sure {
            Some(node) => self.indexed(node)?,
            None => vec![false; within.len()],
        };
        let band = match band {
            Some(node) => self.indexed(node)?,
            None => vec![true; within.len()],
        };
        let mut out = vec![false; within.len()];
        for (i, slot) in out.iter_mut().enumerate().filter(|(i, _)| within[*i]) {
            let n = i + 1;
            let later_delivery = self.view.uid_at(n) != self.view.message_seq_at(n);
            if !later_delivery && sure[i] {
                *slot = true;
            } else if later_delivery || band[i] {
                let sent = self.fields(i, None)?.sent_day;
                *slot = match op {
                    SentOp::Before => sent < target,
                    SentOp::On => sent == target,
                    SentOp::Since => sent >= target,
                };
            }
        }
        Ok(out)
    }

    /// The header fields of message index `i` (from `message` if it was read already).
    fn fields(&mut self, i: usize, message: Option<&ViewMessage>) -> Result<Rc<Fields>, Failure> {
        if let Some(kept) = self.reads.kept.get(&i) {
            return Ok(Rc::clone(kept));
        }
        let fields = Rc::new(match message {
            Some(m) => Fields::parse(&m.raw, m.received_us),
            None => {
                let m = self.read(i)?;
                Fields::parse(&m.raw, m.received_us)
            }
        });
        let size = fields.size();
        if self.reads.held + size <= MAX_KEPT {
            self.reads.held += size;
            self.reads.kept.insert(i, Rc::clone(&fields));
        }
        Ok(fields)
    }

    /// Message index `i` of the view, read for the principal.
    fn read(&self, i: usize) -> Result<ViewMessage, Failure> {
        self.check()?;
        let uid = self
            .view
            .uid_at(i + 1)
            .ok_or_else(|| Failure::No(Some(code("SERVERBUG")), "a message could not be read".into()))?;
        self.store
            .view_message(self.view, uid)
            .map_err(|e| Failure::store(&e))
    }
}

/// Days since 1970-01-01 of `day`.
fn day_number(day: Date) -> i64 {
    day.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second().div_euclid(86_400))
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_unfolded_and_dated_as_written() {
        let raw = b"Subject: A Beautiful\r\n  World?\r\nFrom: =?utf-8?q?J=C3=BCrgen?= <j@x>\r\n\
X-Extra: Some xtra Value\r\nTo:\r\nDate: Sun, 25 Mar 2007 00:00:00 +0200\r\n\r\nbody\r\n";
        let f = Fields::parse(raw, 0);
        let get = |n: &str| f.fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("subject"), Some("a beautiful world?"));
        assert_eq!(get("from"), Some("jürgen <j@x>"));
        assert_eq!(get("x-extra"), Some("some xtra value"));
        assert_eq!(get("to"), Some(""));
        assert_eq!(get("date"), Some("sun, 25 mar 2007 00:00:00 +0200"));
        assert_eq!(f.sent_day, day_number(jiff::civil::date(2007, 3, 25)));
        let late = Fields::parse(b"Date: Sat, 24 Mar 2007 23:30:00 -0500\r\n\r\n", 0);
        assert_eq!(late.sent_day, day_number(jiff::civil::date(2007, 3, 24)));
        // No usable Date: the receive day (UTC).
        let received = 1_174_700_000 * 1_000_000;
        for raw in [
            &b"Subject: x\r\n\r\n"[..],
            b"Date: garbage\r\n\r\n",
            b"Date: 1 Jan 1969 00:00 +0000\r\n\r\n",
            b"",
        ] {
            assert_eq!(
                Fields::parse(raw, received).sent_day,
                1_174_700_000 / 86_400,
                "{raw:?}"
            );
        }
    }
}
