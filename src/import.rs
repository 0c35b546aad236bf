//! Finding messages to import: single files, directories, mbox files and Maildirs.
//! mbox splitting and From_ unescaping are mail-parser's (mboxrd rules); this module only
//! decides what each path is and walks it in a stable order.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use mail_parser::mailbox::mbox::MessageIterator;

/// Largest single message `import` accepts.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 30;

/// How to read a path named on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Directories: Maildirs as Maildir, `*.eml` files as messages, `*.mbox` files as mbox;
    /// a file named directly: mbox if it ends in `.mbox`, else one message.
    Auto,
    /// Every file is one message.
    Eml,
    /// Every file is an mbox.
    Mbox,
}

/// One thing found to import.
pub enum Item {
    /// A message: where it came from, the envelope sender if the source knows one, the bytes.
    Message {
        source: String,
        mail_from: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// Something that could not be read.
    Failed { source: String, reason: String },
}

/// Walks `paths`, handing each message (or failure) to `found`; stops early if it returns false.
pub fn walk(paths: &[PathBuf], format: Format, found: &mut dyn FnMut(Item) -> bool) -> anyhow::Result<()> {
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let go_on = if meta.is_dir() {
            walk_dir(path, format, found)
        } else if format == Format::Mbox || (format == Format::Auto && has_extension(path, "mbox")) {
            read_mbox(path, found)
        } else {
            found(read_file(path))
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
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(reason) => {
            return found(Item::Failed {
                source: dir.display().to_string(),
                reason,
            })
        }
    };
    for Entry { path, is_dir } in entries {
        if is_hidden(&path) {
            continue;
        }
        let go_on = if is_dir {
            walk_dir(&path, format, found)
        } else {
            match format {
                Format::Eml => found(read_file(&path)),
                Format::Mbox => read_mbox(&path, found),
                Format::Auto if has_extension(&path, "eml") => found(read_file(&path)),
                Format::Auto if has_extension(&path, "mbox") => read_mbox(&path, found),
                Format::Auto => true,
            }
        };
        if !go_on {
            return false;
        }
    }
    true
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
        Ok(bytes) => Item::Message {
            source,
            mail_from: Vec::new(),
            bytes,
        },
        Err(e) => Item::Failed {
            source,
            reason: e.to_string(),
        },
    }
}

fn read_mbox(path: &Path, found: &mut dyn FnMut(Item) -> bool) -> bool {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return found(Item::Failed {
                source: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    for (i, message) in MessageIterator::new(BufReader::new(file)).enumerate() {
        let source = format!("{}#{}", path.display(), i + 1);
        let item = match message {
            Ok(m) => Item::Message {
                source,
                mail_from: m.from().as_bytes().to_vec(),
                bytes: strip_separator(m.contents()).to_vec(),
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

/// mbox writers end every message with one empty line before the next `From ` line; it is
/// the mailbox's, not the message's, so exactly one line break is dropped.
fn strip_separator(contents: &[u8]) -> &[u8] {
    if contents.ends_with(b"\r\n\r\n") {
        &contents[..contents.len() - 2]
    } else if contents.ends_with(b"\n\n") {
        &contents[..contents.len() - 1]
    } else {
        contents
    }
}
