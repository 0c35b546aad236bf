//! The mail transaction of a session: MAIL, RCPT, DATA and BDAT, the message's data
//! deadline, and archiving the complete message in its source's journal style. A 250 only
//! after `Store::append_message` returned.

use archive_core::{Envelope, Recipient};
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};
use tokio::time::Instant;

use crate::metrics::Refusal;
use crate::session::{Input, Protocol, Session, MAX_PATH_LEN};
use crate::{deliver, journal};

/// One mail transaction, from MAIL to the end of its data.
#[derive(Default)]
pub(crate) struct Transaction {
    pub(crate) mail_from: String,
    pub(crate) mail_params: String,
    pub(crate) rcpts: Vec<Recipient>,
    pub(crate) body: Vec<u8>,
    /// The data outgrew `max_message_size`: it is read and dropped, the answer is 552.
    pub(crate) too_big: bool,
    /// DATA or a BDAT was accepted: the data deadline runs, no more RCPTs.
    pub(crate) data_started: bool,
}

impl Session {
    pub(crate) fn mail(&mut self, address: &str, size: usize, line: &[u8]) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "say hello first");
        }
        if !self.trusted && self.user.is_none() {
            return self.reply(530, "5.7.0", "authentication required");
        }
        if self.tx.is_some() {
            return self.reply(503, "5.5.1", "nested MAIL command");
        }
        if address.len() > MAX_PATH_LEN {
            return self.reply(501, "5.1.7", "sender address too long");
        }
        if size > self.ctx.config.max_message_size {
            return self.reply(552, "5.3.4", "message size exceeds the archive's limit");
        }
        self.tx = Some(Transaction {
            mail_from: address.to_string(),
            mail_params: deliver::parameters(line),
            ..Transaction::default()
        });
        self.reply(250, "2.1.0", "sender ok");
    }

    pub(crate) fn rcpt(&mut self, address: &str, line: &[u8]) {
        let max = self.ctx.config.max_recipients;
        let accepted = self.ctx.config.accept.is_empty() || {
            let base = journal::base_address(address, &self.ctx.config.journal);
            self.ctx
                .config
                .accept
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&base))
        };
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(503, "5.5.1", "need MAIL before RCPT");
        };
        if tx.data_started {
            return self.reply(503, "5.5.1", "RCPT after BDAT");
        }
        if tx.rcpts.len() >= max {
            return self.reply(452, "4.5.3", "too many recipients");
        }
        if address.len() > MAX_PATH_LEN {
            return self.reply(501, "5.1.3", "recipient address too long");
        }
        if !accepted {
            self.ctx.metrics.rejected(self.protocol, Refusal::Permanent);
            return self.reply(550, "5.1.1", "not an archive address");
        }
        tx.rcpts.push(Recipient {
            address: address.as_bytes().to_vec(),
            params: deliver::parameters(line).into_bytes(),
        });
        self.reply(250, "2.1.5", "recipient ok");
    }

    pub(crate) fn data(&mut self) {
        match &self.tx {
            None => self.reply(503, "5.5.1", "need MAIL before DATA"),
            Some(tx) if tx.rcpts.is_empty() => self.reply(554, "5.5.1", "no valid recipients"),
            Some(tx) if tx.data_started => self.reply(503, "5.5.1", "DATA after BDAT"),
            Some(_) => {
                self.reply(354, "2.0.0", "send the message, end with <CRLF>.<CRLF>");
                self.start_data();
                self.input = Input::Data(DataReceiver::new());
            }
        }
    }

    pub(crate) fn bdat(&mut self, chunk_size: usize, is_last: bool) {
        let reject = match &self.tx {
            None => Some("need MAIL before BDAT"),
            Some(tx) if tx.rcpts.is_empty() => Some("no valid recipients"),
            Some(_) => None,
        };
        if reject.is_none() {
            self.start_data();
        }
        if let (None, Some(tx)) = (reject, self.tx.as_mut()) {
            if tx.body.len().saturating_add(chunk_size) > self.ctx.config.max_message_size {
                tx.body = Vec::new();
                tx.too_big = true;
            }
        }
        self.input = Input::Bdat {
            receiver: BdatReceiver::new(chunk_size, is_last),
            size: chunk_size,
            reject,
        };
    }

    /// The message data begins (DATA, or the first BDAT): its deadline starts.
    fn start_data(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            if !tx.data_started {
                tx.data_started = true;
                self.data_deadline = Some(Instant::now() + self.ctx.config.data_deadline());
            }
        }
    }

    /// The transaction's data is complete: archive it and answer.
    pub(crate) async fn finish_message(&mut self) {
        let received = std::time::Instant::now();
        self.data_deadline = None;
        let Some(tx) = self.tx.take() else { return };
        let replies = if self.protocol == Protocol::Lmtp {
            tx.rcpts.len()
        } else {
            1
        };
        if tx.too_big {
            self.ctx.metrics.rejected(self.protocol, Refusal::Permanent);
            for _ in 0..replies {
                self.reply(552, "5.3.4", "message size exceeds the archive's limit");
            }
            return;
        }
        let style = journal::style_for(
            &self.ctx.config.journal_source,
            &journal::Origin {
                listener: self.protocol,
                client: self.peer.ip(),
                auth_user: self.user.as_deref(),
                mail_from: &tx.mail_from,
            },
        );
        let envelope = self.envelope(&tx);
        let rcpts = tx.rcpts.len();
        let mail_from = tx.mail_from;
        let body = tx.body;
        let bytes = body.len() as u64;
        let ctx = self.ctx.clone();
        let result = tokio::task::spawn_blocking(move || {
            deliver::archive(&ctx.store, envelope, body, style, &ctx.config.journal)
        })
        .await;
        match result {
            Ok(Ok(a)) => {
                // One line per archived message, never its content: what an operator needs to
                // find a delivery (and the relay's own log line for it) again.
                tracing::info!(
                    seq = a.seq,
                    size = bytes,
                    sender = ?mail_from,
                    rcpts,
                    client = %self.peer,
                    protocol = %self.protocol.name(),
                    style = %style.name(),
                    duplicate = a.kind == Some(archive_core::log::record::RecordKind::Arrival),
                    "archived"
                );
                self.futile = 0;
                self.ctx
                    .metrics
                    .accepted(self.protocol, bytes, received.elapsed());
                let hash: String = a.content_hash.iter().map(|b| format!("{b:02x}")).collect();
                let text = format!("archived seq={} blake3={hash}", a.seq);
                for _ in 0..replies {
                    self.reply(250, "2.0.0", &text);
                }
            }
            Ok(Err(e)) => self.storage_failure(&e, replies),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "archiving task failed; answered 451");
                self.temporary_failure(replies);
            }
        }
    }

    /// The reply to a failed append, by whose fault it is: the message's own (it can never be
    /// stored: 5xx, the sender bounces it) or the store's (451: the sender keeps it queued and
    /// tries again, nothing is lost).
    fn storage_failure(&mut self, e: &archive_core::Error, replies: usize) {
        match (e, e.fault()) {
            (archive_core::Error::TooLarge { .. }, _) => {
                tracing::info!(peer = %self.peer, error = %e, "message refused; answered 552");
                self.ctx.metrics.rejected(self.protocol, Refusal::Permanent);
                for _ in 0..replies {
                    self.reply(552, "5.3.4", "message size exceeds the archive's limit");
                }
            }
            (_, archive_core::Fault::Request) => {
                tracing::info!(peer = %self.peer, error = %e, "message refused; answered 554");
                self.ctx.metrics.rejected(self.protocol, Refusal::Permanent);
                for _ in 0..replies {
                    self.reply(554, "5.6.0", "the archive cannot store this message");
                }
            }
            _ => {
                tracing::error!(peer = %self.peer, error = %e, "archiving failed; answered 451");
                self.temporary_failure(replies);
            }
        }
    }

    fn temporary_failure(&mut self, replies: usize) {
        self.ctx.metrics.rejected(self.protocol, Refusal::Temporary);
        for _ in 0..replies {
            self.reply(451, "4.3.0", "archive storage failed, try again later");
        }
    }

    fn envelope(&self, tx: &Transaction) -> Envelope {
        // RFC 3848 "with" protocol names.
        let mut protocol = match self.protocol {
            Protocol::Smtp => "ESMTP",
            Protocol::Lmtp => "LMTP",
        }
        .to_string();
        if !self.tls.is_empty() {
            protocol.push('S');
        }
        if self.user.is_some() {
            protocol.push('A');
        }
        Envelope {
            mail_from: tx.mail_from.as_bytes().to_vec(),
            mail_params: tx.mail_params.as_bytes().to_vec(),
            rcpt_to: tx.rcpts.clone(),
            original_recipients: Vec::new(),
            protocol,
            client: self.peer.to_string(),
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            source: String::new(),
        }
    }
}
