//! Archiving one complete transaction in the style its source was configured for.

use archive_core::{Appended, Envelope, OnDuplicate, Store};

use crate::config::{JournalConfig, JournalStyle};
use crate::journal;

/// Archives one transaction (blocking: waits for the durable append). Only a source
/// configured for Exchange journal reports has its reports unwrapped: such a report yields two
/// records, the report and the original message it carries, and the answer names the
/// original. Only a source configured for recipient-encoded journaling has its recipients
/// decoded. Everything else is archived as received.
pub(crate) fn archive(
    store: &Store,
    mut envelope: Envelope,
    body: Vec<u8>,
    style: JournalStyle,
    journal_config: &JournalConfig,
) -> archive_core::Result<Appended> {
    match style {
        JournalStyle::Plain => {}
        JournalStyle::RecipientEncoded => journal::decode_envelope(&mut envelope, journal_config),
        JournalStyle::Exchange => {
            if let Some(report) = journal::unwrap_exchange_report(&body) {
                envelope.source = "exchange-journal-report".into();
                let kept = store.append_message(&envelope, &body, OnDuplicate::RecordArrival)?;
                let hash: String = kept.content_hash.iter().map(|b| format!("{b:02x}")).collect();
                let original = Envelope {
                    mail_from: report.sender.into_bytes(),
                    original_recipients: report.recipients.into_iter().map(String::into_bytes).collect(),
                    source: format!("exchange-journal-report seq={} blake3={hash}", kept.seq),
                    ..envelope
                };
                return store.append_message(&original, &report.original, OnDuplicate::RecordArrival);
            }
        }
    }
    store.append_message(&envelope, &body, OnDuplicate::RecordArrival)
}

/// The ESMTP parameters of a MAIL or RCPT line, verbatim: what follows the `<path>`.
pub(crate) fn parameters(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let after_colon = text.split_once(':').map_or("", |(_, rest)| rest).trim_start();
    let rest = match after_colon.strip_prefix('<') {
        Some(inner) => inner.split_once('>').map_or("", |(_, rest)| rest),
        None => after_colon.split_once(' ').map_or("", |(_, rest)| rest),
    };
    rest.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::parameters;

    #[test]
    fn parameters_are_kept_verbatim() {
        assert_eq!(
            parameters(b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=10\r\n"),
            "BODY=8BITMIME SIZE=10"
        );
        assert_eq!(parameters(b"RCPT TO:<x@y>\r\n"), "");
        assert_eq!(parameters(b"MAIL FROM:<> SMTPUTF8\r\n"), "SMTPUTF8");
        assert_eq!(parameters(b"RCPT TO: <x@y> NOTIFY=NEVER\r\n"), "NOTIFY=NEVER");
    }
}
