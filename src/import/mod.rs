//! Finding messages to import: single files, directories, mbox files, Maildirs and MH
//! folders. What a file is comes from its content (`detect`): a From_ line makes an mbox, a
//! header block a message; anything else is skipped and reported, never imported as mail or
//! passed over in silence. mbox splitting and From_ unescaping are archive-core's
//! `export::mbox` reader (mboxrd rules, the inverse of `export --format mbox`); this module
//! decides what each path is and walks it in a stable order.

mod detect;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use archive_core::export::mbox::MboxReader;
use detect::Content;

/// Largest single message `import` accepts.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 30;

/// How to read a path named on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// By content: Maildirs and MH folders by their layout; a file starting with a From_ line
    /// is an mbox, one starting with header fields a message (`*.eml` is always a message,
    /// `*.mbox` always an mbox); anything else is skipped and reported.
    Auto,
    /// Every file is one message.
    Eml,
    /// Every file is an mbox.
    Mbox,
}

/// One thing found to import.
pub enum Item {
    /// A message: where it came from, the envelope sender if the source knows one, the bytes,
    /// and something the user should know about how it was read.
    Message {
        source: String,
        mail_from: Vec<u8>,
        bytes: Vec<u8>,
        note: Option<String>,
    },
    /// Something that could not be read.
    Failed { source: String, reason: String },
    /// A file that is not mail as far as its content tells: not imported.
    Skipped { source: String, reason: String },
    /// A mail client's index file (no mail in it): not imported, counted.
    Ignored { source: String },
}

/// Walks `paths`, handing each message (or failure) to `found`; stops early if it returns false.
pub fn walk(paths: &[PathBuf], format: Format, found: &mut dyn FnMut(Item) -> bool) -> anyhow::Result<()> {
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let go_on = if meta.is_dir() {
            walk_dir(path, format, found)
        } else {
            read_any(path, format, found)
        };
        if !go_on {
            break;
        }
    }
    Ok(())
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// A directory entry and whether it is a directory (symbolic links followed).
struct Entry {
    path: PathBuf,
    is_dir: bool,
}

impl Entry {
    fn name(&self) -> &str {
        self.path.file_name().and_then(|n| n.to_str()).unwrap_or("")
    }
}

/// The entries of `dir` by name. Whether an entry is a directory comes from the directory
/// listing itself where it can (no `stat` per file: a corpus is mostly files).
fn sorted_entries(dir: &Path) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            let is_dir = match e.file_type() {
                Ok(t) if !t.is_symlink() => t.is_dir(),
                _ => path.is_dir(),
            };
            Entry { path, is_dir }
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

fn walk_dir(dir: &Path, format: Format, found: &mut dyn FnMut(Item) -> bool) -> bool {
    if format == Format::Auto && is_maildir(dir) {
        return walk_maildir(dir, found);
    }
    let mut entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(reason) => {
            return found(Item::Failed {
                source: dir.display().to_string(),
                reason,
            })
        }
    };
    entries.retain(|e| !is_hidden(&e.path));
    let files: Vec<&str> = entries.iter().filter(|e| !e.is_dir).map(Entry::name).collect();
    let mh = format == Format::Auto && detect::is_mh_folder(dir, &files);
    if mh {
        // Message 2 before message 10.
        entries.sort_by_key(|e| (detect::mh_number(e.name()).is_none(), detect::mh_number(e.name())));
    }
    for entry in entries {
        let go_on = if entry.is_dir {
            walk_dir(&entry.path, format, found)
        } else if mh && detect::mh_number(entry.name()).is_some() {
            // An MH folder's numbered files are its messages, whatever their first line.
            found(read_file(&entry.path))
        } else {
            read_any(&entry.path, format, found)
        };
        if !go_on {
            return false;
        }
    }
    true
}

/// Reads one file as `format` says, or as its name and content say.
fn read_any(path: &Path, format: Format, found: &mut dyn FnMut(Item) -> bool) -> bool {
    match format {
        Format::Eml => found(read_file(path)),
        Format::Mbox => read_mbox(path, found),
        Format::Auto if has_extension(path, "eml") => found(read_file(path)),
        Format::Auto if has_extension(path, "mbox") => read_mbox(path, found),
        Format::Auto => {
            let source = path.display().to_string();
            match detect::sniff_file(path) {
                Ok(Content::Mbox) => read_mbox(path, found),
                Ok(Content::Message) => found(read_file(path)),
                Ok(Content::Index) => found(Item::Ignored { source }),
                Ok(Content::Unknown(reason)) => found(Item::Skipped { source, reason }),
                Err(e) => found(Item::Failed {
                    source,
                    reason: e.to_string(),
                }),
            }
        }
    }
}

/// A Maildir: `new/` and `cur/` hold one message per file; Maildir++ subfolders are `.Name`.
fn walk_maildir(dir: &Path, found: &mut dyn FnMut(Item) -> bool) -> bool {
    for sub in ["new", "cur"] {
        let Ok(entries) = sorted_entries(&dir.join(sub)) else {
            continue;
        };
        for Entry { path, is_dir } in entries {
            if !is_dir && path.is_file() && !is_hidden(&path) && !found(read_file(&path)) {
                return false;
            }
        }
    }
    if let Ok(entries) = sorted_entries(dir) {
        for Entry { path, is_dir } in entries {
            if is_hidden(&path) && is_dir && is_maildir(&path) && !walk_maildir(&path, found) {
                return false;
            }
        }
    }
    true
}

/// One file as one message. A file that looks like a whole mbox is still one message (its
/// name or `--format eml` said so), with a note saying what it looks like.
fn read_file(path: &Path) -> Item {
    let source = path.display().to_string();
    let result = std::fs::File::open(path).and_then(|mut file| {
        let len = file.metadata()?.len();
        if len > MAX_MESSAGE_BYTES {
            return Err(std::io::Error::other(format!(
                "{len} bytes is more than the {MAX_MESSAGE_BYTES}-byte limit for one message"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        // The limit also holds for a file that grows while it is read.
        (&mut file).take(MAX_MESSAGE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_MESSAGE_BYTES {
            return Err(std::io::Error::other(format!(
                "more than the {MAX_MESSAGE_BYTES}-byte limit for one message"
            )));
        }
        Ok(bytes)
    });
    match result {
        Ok(bytes) if bytes.is_empty() => Item::Failed {
            source,
            reason: "empty file: not a message".into(),
        },
        Ok(bytes) => {
            let later = detect::later_from_lines(&bytes);
            let note = if detect::starts_with_from_line(&bytes) && later > 0 {
                Some(format!(
                    "starts with a From_ line and has {later} more after blank lines: if it is \
                     an mbox, it was stored as one message (import it with --format mbox)"
                ))
            } else {
                None
            };
            Item::Message {
                source,
                mail_from: Vec::new(),
                bytes,
                note,
            }
        }
        Err(e) => Item::Failed {
            source,
            reason: e.to_string(),
        },
    }
}

/// An mbox: messages after From_ lines. A file that does not start with one is not an mbox
/// (the reader would pass over everything before the first From_ line).
fn read_mbox(path: &Path, found: &mut dyn FnMut(Item) -> bool) -> bool {
    let source = path.display().to_string();
    let mut reader = match File::open(path) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            return found(Item::Failed {
                source,
                reason: e.to_string(),
            })
        }
    };
    let head = match reader.fill_buf() {
        Ok(head) => head,
        Err(e) => {
            return found(Item::Failed {
                source,
                reason: e.to_string(),
            })
        }
    };
    if head.is_empty() {
        return found(Item::Failed {
            source,
            reason: "empty file: not an mbox".into(),
        });
    }
    if !detect::starts_with_from_line(head) {
        return found(Item::Failed {
            source,
            reason: "not an mbox: it does not start with a From_ line (`From sender date`); \
                     `--format eml` imports it as one message"
                .into(),
        });
    }
    for (i, message) in MboxReader::new(reader, MAX_MESSAGE_BYTES as usize).enumerate() {
        let source = format!("{}#{}", path.display(), i + 1);
        let item = match message {
            Ok(m) => Item::Message {
                source,
                mail_from: envelope_sender(m.sender),
                bytes: m.contents,
                note: None,
            },
            Err(e) => Item::Failed {
                source,
                reason: e.to_string(),
            },
        };
        if !found(item) {
            return false;
        }
    }
    true
}

/// The envelope sender of a From_ line; Thunderbird writes `From - date`, which names nobody.
fn envelope_sender(from: Vec<u8>) -> Vec<u8> {
    if from == b"-" {
        Vec::new()
    } else {
        from
    }
}
