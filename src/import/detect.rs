//! What a file is, by its content: an mbox (it starts with a From_ line), one message (it
//! starts with an RFC 5322 header block), a mail client's index file, or something else. Also
//! what a directory is: an MH folder (numbered message files).
//!
//! Names are not trusted to say what a file holds (Thunderbird's mbox files have no
//! extension; MH and many corpora name messages by number), except `.eml` and `.mbox`, which
//! say it outright.

use std::io::Read;
use std::path::Path;

/// How much of a file is read to tell what it is.
pub const SNIFF_BYTES: u64 = 64 << 10;

/// What a file looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Starts with a From_ line (`From sender date`): an mbox.
    Mbox,
    /// Starts with a header block: one message.
    Message,
    /// A mail client's own index or settings file (Thunderbird's `.msf` summaries …): no
    /// mail in it.
    Index,
    /// None of these; the reason says what was found.
    Unknown(String),
}

/// Reads the start of `path` and tells what it holds.
pub fn sniff_file(path: &Path) -> std::io::Result<Content> {
    if is_index_file(path) {
        return Ok(Content::Index);
    }
    let mut prefix = Vec::new();
    std::fs::File::open(path)?
        .take(SNIFF_BYTES)
        .read_to_end(&mut prefix)?;
    Ok(sniff(&prefix))
}

/// Tells what a file holds from its first bytes.
pub fn sniff(prefix: &[u8]) -> Content {
    if prefix.is_empty() {
        return Content::Unknown("empty file: not a message".into());
    }
    if starts_with_from_line(prefix) {
        return Content::Mbox;
    }
    match header_block(prefix) {
        Ok(()) => Content::Message,
        Err(why) => Content::Unknown(format!(
            "not a message or an mbox: {why}; `--format eml` imports it as a message anyway"
        )),
    }
}

/// Whether `bytes` begins with an mbox From_ line: `From `, then a sender and a date.
pub fn starts_with_from_line(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ")
}

/// How many further From_ lines follow blank lines in `bytes` (after its first line): each
/// starts another message if `bytes` is an mbox.
pub fn later_from_lines(bytes: &[u8]) -> usize {
    bytes
        .windows(6)
        .enumerate()
        .filter(|(at, w)| {
            let before = &bytes[..*at];
            *w == b"\nFrom " && (before.ends_with(b"\n") || before.ends_with(b"\n\r"))
        })
        .count()
}

/// Header fields of which a message has at least one; a text file whose first lines happen
/// to look like `Word: text` is not taken for mail.
const COMMON_FIELDS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "received",
    "return-path",
    "delivered-to",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
];

/// Checks that `prefix` starts with an RFC 5322 header block: field lines (a name of printable
/// ASCII without `:`, then `:`) and their continuation lines, up to an empty line or the end
/// of what was read, with at least one of the common fields.
fn header_block(prefix: &[u8]) -> Result<(), String> {
    let mut fields = 0usize;
    let mut common = false;
    // The last line may be cut by the sniff limit: only whole lines are judged.
    let whole = match prefix.iter().rposition(|&b| b == b'\n') {
        Some(end) if prefix.len() as u64 >= SNIFF_BYTES => &prefix[..end],
        _ => prefix,
    };
    for (number, line) in whole.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if fields == 0 {
                return Err("the first line is indented".into());
            }
            continue;
        }
        let Some(name) = field_name(line) else {
            let shown = String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
            return Err(if number == 0 {
                format!("the first line ({shown:?}) is not a header field")
            } else {
                format!("line {} ({shown:?}) is not a header field", number + 1)
            });
        };
        fields += 1;
        common |= COMMON_FIELDS.iter().any(|c| c.eq_ignore_ascii_case(name));
    }
    if !common {
        return Err("no From, To, Subject, Date, Received or similar field".into());
    }
    Ok(())
}

/// The name of a header field line (`Name: value`, also the obsolete `Name : value`).
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = std::str::from_utf8(&line[..colon])
        .ok()?
        .trim_end_matches([' ', '\t']);
    let valid = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b));
    valid.then_some(name)
}

/// Mail clients' own files next to their mail: Thunderbird's `.msf` summaries (Mork),
/// message filter rules and POP state.
fn is_index_file(path: &Path) -> bool {
    let ext_msf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("msf"));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ext_msf || matches!(name, "msgFilterRules.dat" | "popstate.dat")
}

/// Whether a directory's non-hidden file names make it an MH folder: it has
/// `.mh_sequences`, or every file is named by a number.
pub fn is_mh_folder(dir: &Path, file_names: &[&str]) -> bool {
    dir.join(".mh_sequences").is_file()
        || (!file_names.is_empty() && file_names.iter().all(|n| mh_number(n).is_some()))
}

/// The message number of an MH message file (`17`).
pub fn mh_number(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_message_and_other_files_are_told_apart() {
        assert_eq!(
            sniff(b"From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: a\n\nx\n"),
            Content::Mbox
        );
        // Thunderbird's From_ lines.
        assert_eq!(
            sniff(b"From - Tue Feb 06 10:00:00 2024\r\nX-Mozilla-Status: 0001\r\n"),
            Content::Mbox
        );
        assert_eq!(
            sniff(b"Received: from x\r\n\tby y\r\nSubject: hi\r\n\r\nbody"),
            Content::Message
        );
        assert_eq!(
            sniff(b"Return-Path: <a@b>\nX-Thing : obsolete space\nFrom: a@b\n"),
            Content::Message
        );
        assert_eq!(sniff(b"Subject: only a header, no body"), Content::Message);
        for junk in [
            &b"\x00\x01\x02\x03binary"[..],
            b"Hello world\nthis is a note\n",
            b"Note: buy milk\nTodo: call bob\n\nthat's all\n",
            b" Subject: indented\n",
            b"\xef\xbb\xbfSubject: after a BOM\n",
            b"// <!-- <mdb:mork:z v=\"1.4\"/> -->\n",
            b"",
        ] {
            assert!(matches!(sniff(junk), Content::Unknown(_)), "{junk:?}");
        }
        let Content::Unknown(why) = sniff(b"Subject: x\nnot a field\n") else {
            panic!("not a message");
        };
        assert!(why.contains("line 2"), "{why}");
    }

    #[test]
    fn a_header_block_cut_by_the_sniff_limit_is_judged_on_whole_lines() {
        let mut long = b"Subject: long\r\nX-Long: ".to_vec();
        long.resize(SNIFF_BYTES as usize - 6, b'a');
        long.extend_from_slice(b"\r\nX-Cu");
        assert_eq!(sniff(&long), Content::Message);
    }

    #[test]
    fn later_from_lines_are_counted() {
        assert_eq!(
            later_from_lines(b"From a x\nS: 1\n\nb\n\nFrom b y\nS: 2\n\nc\n"),
            1
        );
        assert_eq!(
            later_from_lines(b"From a x\r\nS: 1\r\n\r\nFrom b\r\n\r\nFrom c\r\n"),
            2
        );
        assert_eq!(later_from_lines(b"Subject: x\n\nFrom here on, prose\n"), 1);
        assert_eq!(later_from_lines(b"Subject: x\n\n>From quoted\n"), 0);
    }

    #[test]
    fn mh_folders_are_numbered() {
        let dir = tempfile::tempdir().unwrap();
        assert!(is_mh_folder(dir.path(), &["1", "2", "10"]));
        assert!(!is_mh_folder(dir.path(), &["1", "notes.txt"]));
        assert!(!is_mh_folder(dir.path(), &[]));
        std::fs::write(dir.path().join(".mh_sequences"), "unseen: 2\n").unwrap();
        assert!(is_mh_folder(dir.path(), &["1", "notes.txt"]));
        assert_eq!(mh_number("0042"), Some(42));
        assert_eq!(mh_number(",3"), None);
        assert!(is_index_file(Path::new("Mail/Inbox.msf")));
        assert!(!is_index_file(Path::new("Mail/Inbox")));
    }
}
