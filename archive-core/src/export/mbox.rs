//! mboxrd, both ways: [`MboxWriter`] for `mailvault export --format mbox`, [`MboxReader`] for
//! `mailvault import`, so that every message written comes back byte for byte (docs/FORMAT.md
//! §"mbox export").
//!
//! The format is the common mboxrd one: each message after a `From sender asctime-date` line,
//! every body line matching `^>*From ` given one more `>`, one empty line after the message.
//! Two cases plain mboxrd cannot carry, and how they are carried here:
//! - the line break after the message is the mailbox's, and a reader drops exactly one: `\n`,
//!   or `\r\n` where the message ends in `\r\n` (so a CRLF mailbox stays CRLF);
//! - a message that does not end in a line break (an empty one too) gets one so the next
//!   From_ line starts a line, and its From_ line says so with the word [`NO_FINAL_NEWLINE`]
//!   after the date; the reader then drops that line break too. Body lines cannot forge it:
//!   a body line starting with `From ` is escaped.

use std::io::{self, BufRead, Read, Write};

/// The last word of a From_ line whose message had no line break at its end.
pub const NO_FINAL_NEWLINE: &str = "mailvault:no-final-newline";

/// The From_ line's sender when the envelope has none that fits on it.
const NO_SENDER: &[u8] = b"MAILER-DAEMON";

/// Writes messages to an mboxrd stream, one at a time, without copying them.
pub struct MboxWriter<W: Write> {
    out: W,
}

impl<W: Write> MboxWriter<W> {
    /// A writer onto `out` (buffer it: messages are written a line at a time).
    pub fn new(out: W) -> Self {
        MboxWriter { out }
    }

    /// Appends one message: its From_ line (the envelope sender, or `MAILER-DAEMON` when it is
    /// empty or has a space or control character; the receive time in UTC), the message with
    /// From_-like lines escaped, and the empty line after it.
    pub fn write_message(&mut self, envelope_from: &[u8], received_us: i64, raw: &[u8]) -> io::Result<()> {
        let terminated = raw.ends_with(b"\n");
        self.out.write_all(b"From ")?;
        self.out.write_all(from_line_sender(envelope_from))?;
        self.out.write_all(b" ")?;
        self.out.write_all(asctime(received_us).as_bytes())?;
        if !terminated {
            self.out.write_all(b" ")?;
            self.out.write_all(NO_FINAL_NEWLINE.as_bytes())?;
        }
        self.out.write_all(b"\n")?;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if is_from_like(line) {
                self.out.write_all(b">")?;
            }
            self.out.write_all(line)?;
        }
        if !terminated {
            self.out.write_all(b"\n")?;
        }
        let separator: &[u8] = if raw.ends_with(b"\r\n") { b"\r\n" } else { b"\n" };
        self.out.write_all(separator)
    }

    /// Flushes and hands back the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// `^>*From `: a line a reader would take for a From_ line once one `>` is removed.
fn is_from_like(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    line[quotes..].starts_with(b"From ")
}

/// The envelope sender as the From_ line's one word, angle brackets removed.
fn from_line_sender(envelope_from: &[u8]) -> &[u8] {
    let bare = envelope_from
        .strip_prefix(b"<")
        .and_then(|s| s.strip_suffix(b">"))
        .unwrap_or(envelope_from);
    let fits = !bare.is_empty()
        && bare != b"-"
        && std::str::from_utf8(bare).is_ok_and(|s| !s.chars().any(|c| c.is_whitespace() || c.is_control()));
    if fits {
        bare
    } else {
        NO_SENDER
    }
}

/// The receive time as asctime in UTC (`Thu Jan  1 00:00:00 1970`), the From_ line's date.
fn asctime(received_us: i64) -> String {
    let at = jiff::Timestamp::from_microsecond(received_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    at.strftime("%a %b %e %H:%M:%S %Y").to_string()
}

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The From_ line's sender word, as written (`-`, Thunderbird's "nobody", included).
    pub sender: Vec<u8>,
    /// The message, unescaped, without the mailbox's line break after it.
    pub contents: Vec<u8>,
}

/// Reads the messages of an mboxrd stream, inverting [`MboxWriter`] exactly, and reading other
/// writers' mboxes (mboxo, mboxrd, Thunderbird's) as mboxrd. Anything before the first From_
/// line is passed over.
pub struct MboxReader<R: BufRead> {
    reader: R,
    max_message: usize,
    current: Option<Pending>,
    line: Vec<u8>,
    at_line_start: bool,
    done: bool,
}

/// The message being read: its From_ line's facts and the lines so far.
struct Pending {
    sender: Vec<u8>,
    no_final_newline: bool,
    contents: Vec<u8>,
    oversized: bool,
}

impl<R: BufRead> MboxReader<R> {
    /// A reader that refuses (as an `Err` item, then goes on with the next message) any
    /// message longer than `max_message` bytes; no line is held longer than that either.
    pub fn new(reader: R, max_message: usize) -> Self {
        MboxReader {
            reader,
            max_message,
            current: None,
            line: Vec::new(),
            at_line_start: true,
            done: false,
        }
    }

    /// The next piece of a line, at most a little more than the largest message.
    fn read_line(&mut self) -> io::Result<usize> {
        self.line.clear();
        let limit = self.max_message.saturating_add(2) as u64;
        <&mut R as Read>::take(&mut self.reader, limit).read_until(b'\n', &mut self.line)
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = io::Result<MboxMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let n = match self.read_line() {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if n == 0 {
                self.done = true;
                return self.current.take().map(|m| m.finish(self.max_message));
            }
            let line_start = self.at_line_start;
            self.at_line_start = self.line.ends_with(b"\n");
            if line_start && self.line.starts_with(b"From ") {
                let next = Pending::new(&self.line);
                if let Some(done) = self.current.replace(next) {
                    return Some(done.finish(self.max_message));
                }
                continue;
            }
            let Some(message) = self.current.as_mut() else {
                continue;
            };
            let mut piece = &self.line[..];
            if line_start && is_from_like(piece) && piece.first() == Some(&b'>') {
                piece = &piece[1..];
            }
            message.push(piece, self.max_message);
        }
    }
}

impl Pending {
    fn new(from_line: &[u8]) -> Self {
        let rest = &from_line[b"From ".len()..];
        let words = || rest.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
        Pending {
            sender: words().next().unwrap_or_default().to_vec(),
            no_final_newline: words().next_back() == Some(NO_FINAL_NEWLINE.as_bytes()),
            contents: Vec::new(),
            oversized: false,
        }
    }

    fn push(&mut self, piece: &[u8], max_message: usize) {
        if self.oversized {
            return;
        }
        // Two bytes of slack: the mailbox's line break comes off at the end.
        if self.contents.len() + piece.len() > max_message.saturating_add(2) {
            self.oversized = true;
            self.contents = Vec::new();
            return;
        }
        self.contents.extend_from_slice(piece);
    }

    fn finish(mut self, max_message: usize) -> io::Result<MboxMessage> {
        if self.oversized {
            return Err(io::Error::other(format!(
                "more than the {max_message}-byte limit for one message"
            )));
        }
        strip_separator(&mut self.contents);
        if self.no_final_newline && self.contents.ends_with(b"\n") {
            self.contents.pop();
        }
        if self.contents.len() > max_message {
            return Err(io::Error::other(format!(
                "more than the {max_message}-byte limit for one message"
            )));
        }
        Ok(MboxMessage {
            sender: self.sender,
            contents: self.contents,
        })
    }
}

/// mbox writers end every message with one empty line before the next `From ` line; it is
/// the mailbox's, not the message's, so exactly one line break is dropped.
fn strip_separator(contents: &mut Vec<u8>) {
    if contents.ends_with(b"\r\n\r\n") {
        contents.truncate(contents.len() - 2);
    } else if contents.ends_with(b"\n\n") {
        contents.truncate(contents.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(messages: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut writer = MboxWriter::new(Vec::new());
        for (i, (from, raw)) in messages.iter().enumerate() {
            writer.write_message(from, i as i64 * 1_000_000, raw).unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn read(mbox: &[u8]) -> Vec<MboxMessage> {
        MboxReader::new(mbox, 1 << 20).map(|m| m.unwrap()).collect()
    }

    fn round_trip(raws: &[&[u8]]) {
        let messages: Vec<(&[u8], &[u8])> = raws.iter().map(|r| (&b"a@example.org"[..], *r)).collect();
        let mbox = write(&messages);
        let back = read(&mbox);
        assert_eq!(back.len(), raws.len(), "{}", String::from_utf8_lossy(&mbox));
        for (got, want) in back.iter().zip(raws) {
            assert_eq!(got.contents, *want, "mbox:\n{}", String::from_utf8_lossy(&mbox));
            assert_eq!(got.sender, b"a@example.org");
        }
    }

    #[test]
    fn the_written_form_is_mboxrd() {
        let mbox = write(&[(
            b"alice@example.org",
            b"Subject: x\n\nFrom here\n>From there\n>>From afar\nFrom\nFromage\n",
        )]);
        assert_eq!(
            mbox,
            b"From alice@example.org Thu Jan  1 00:00:00 1970\n\
              Subject: x\n\n>From here\n>>From there\n>>>From afar\nFrom\nFromage\n\n"
        );
    }

    #[test]
    fn the_date_is_asctime_in_utc_and_senders_that_do_not_fit_are_the_mailer_daemon() {
        let mut writer = MboxWriter::new(Vec::new());
        // 2024-02-06 10:05:09.5 UTC.
        writer.write_message(b"", 1_707_213_909_500_000, b"a\n").unwrap();
        writer.write_message(b"two words@x", 0, b"b\n").unwrap();
        writer.write_message(b"<bob@example.org>", 0, b"c\n").unwrap();
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let from_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("From ")).collect();
        assert_eq!(
            from_lines,
            [
                "From MAILER-DAEMON Tue Feb  6 10:05:09 2024",
                "From MAILER-DAEMON Thu Jan  1 00:00:00 1970",
                "From bob@example.org Thu Jan  1 00:00:00 1970",
            ]
        );
    }

    #[test]
    fn tricky_messages_come_back_byte_for_byte() {
        round_trip(&[
            b"Subject: lf\n\nbody\n",
            b"Subject: crlf\r\n\r\nbody\r\n",
            b"Subject: no final newline\n\nbody",
            b"Subject: crlf, no final newline\r\n\r\nbody",
            b"",
            b"\n",
            b"\r\n",
            b"\r",
            b"x\r\n\r",
            b"Subject: blank lines at the end\n\nbody\n\n\n",
            b"Subject: crlf blank lines\r\n\r\nbody\r\n\r\n",
            b"Subject: from lines\n\nFrom me\n>From you\n>>From them\nFrom\n>From\nFrom ",
            b"From the very first line\n",
            b"Subject: binary\n\n\x00\x01\xff\xfe\r\x00\nFrom \x00\n",
            b"Subject: mixed\r\n\nbody\n\r\n",
            b"Subject: last message, no newline",
        ]);
    }

    #[test]
    fn another_writers_mbox_reads_as_before() {
        // Thunderbird: CRLF, `From -`, one CRLF after each message, the last one without.
        let mbox = b"From - Tue Feb 06 10:00:00 2024\r\nSubject: a\r\n\r\nhello\r\n\r\n\
                     From - Tue Feb 06 11:00:00 2024\r\nSubject: b\r\n\r\n>From quoted\r\n";
        let back = read(mbox);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].contents, b"Subject: a\r\n\r\nhello\r\n");
        assert_eq!(back[0].sender, b"-");
        assert_eq!(back[1].contents, b"Subject: b\r\n\r\nFrom quoted\r\n");
        // Text before the first From_ line is no message.
        assert_eq!(read(b"junk\nFrom a b\nx\n").len(), 1);
    }

    #[test]
    fn a_body_line_cannot_forge_the_no_final_newline_mark() {
        let forged = format!("Subject: x\n\nFrom a@b Thu Jan  1 00:00:00 1970 {NO_FINAL_NEWLINE}\ny\n");
        round_trip(&[forged.as_bytes()]);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_and_the_next_one_read() {
        let big = vec![b'x'; 100];
        let mbox = write(&[(b"a@b", &big), (b"a@b", b"small\n")]);
        let items: Vec<_> = MboxReader::new(&mbox[..], 50).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_err());
        assert_eq!(items[1].as_ref().unwrap().contents, b"small\n");
    }

    proptest! {
        #[test]
        fn any_messages_round_trip(
            raws in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just(b'\n'), Just(b'\r'), Just(b'>'), Just(b' '), Just(0u8),
                        Just(b'F'), Just(b'r'), Just(b'o'), Just(b'm'), any::<u8>(),
                    ],
                    0..60,
                ),
                1..6,
            )
        ) {
            // Lines of `From ` are made likely by splicing the word in.
            let raws: Vec<Vec<u8>> = raws
                .into_iter()
                .map(|r| {
                    let mut out = Vec::new();
                    for (i, b) in r.into_iter().enumerate() {
                        if i % 7 == 3 {
                            out.extend_from_slice(b"From ");
                        }
                        out.push(b);
                    }
                    out
                })
                .collect();
            let refs: Vec<&[u8]> = raws.iter().map(|r| &r[..]).collect();
            round_trip(&refs);
        }
    }
}
