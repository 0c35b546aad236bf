//! The audit spool: how a process that finds the log owned by a running server still leaves
//! its audit record (docs/FORMAT.md §Audit spool).
//!
//! [`record`] appends directly when it can take the store's write lock. Otherwise it writes
//! the event, with a random `id` and the time it happened (`at`), as one JSON file
//! `<data>/audit-spool/<id>.json` — temporary file, fsync, rename, directory fsync, so the
//! event is durable when `record` returns — and the server takes it in ([`SpoolIngester`]):
//! appends it as an audit record, waits until that is durable, then deletes the file. A file
//! that is too big, not a regular file, badly named or not an event is moved to
//! `audit-spool/rejected/` and an audit record says so: nothing is dropped silently.
//!
//! The guarantee is at least once: a crash after a record became durable and before its file
//! was deleted takes the file in again at the next start, so the trail holds the event twice,
//! both with the same `id`. Within one process an `id` already taken in is never appended
//! again (a failed delete is retried instead).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::AuditEvent;
use crate::store::{Layout, SearchIndexing, Store, StoreConfig};
use crate::{Error, IoContext, Result};

/// Largest spool file taken in; a bigger one is rejected (our own events are a few KiB).
pub const MAX_SPOOL_FILE_BYTES: u64 = 64 * 1024;

/// Most spool files one [`SpoolIngester::round`] takes in (or rejects); the rest wait for the
/// next round ([`SpoolRound::more`]).
pub const MAX_SPOOL_FILES_PER_ROUND: usize = 256;

/// Where spool files go that could not be taken in.
const REJECTED: &str = "rejected";

/// Spool ids remembered as taken in, so a file whose delete failed is not appended again.
const REMEMBERED_IDS: usize = 4 * MAX_SPOOL_FILES_PER_ROUND;

/// How [`record`] recorded an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Appended to the log, durable, as this seq.
    Appended(u64),
    /// A server owns the log: spooled durably in this file, for the server to take in.
    Spooled(PathBuf),
}

/// Records `event` durably: appended to the log of the store in `layout` if its write lock
/// can be taken (first taking in what the spool holds, so spooled events keep their order
/// before this one), else spooled for the server that holds the lock. `key_path` is the
/// signing key, needed to append. Errors other than a held lock (no key, a damaged log) are
/// returned: the event was not recorded.
pub fn record(layout: &Layout, key_path: &Path, event: &AuditEvent) -> Result<Recorded> {
    // A record is written and nothing searched: the search index catches up at the next
    // live open, as after an import.
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    match Store::open(&layout.dir, key_path, config) {
        Ok(store) => {
            SpoolIngester::default().drain(&store)?;
            let seq = store.append_audit(event)?;
            store.close()?;
            Ok(Recorded::Appended(seq))
        }
        Err(Error::Locked(_)) => Ok(Recorded::Spooled(spool(layout, event)?)),
        Err(e) => Err(e),
    }
}

/// Writes `event` into the spool of `layout`, durably, with a new random `id` and (unless it
/// has one) `at` = now. Returns the file's path.
pub fn spool(layout: &Layout, event: &AuditEvent) -> Result<PathBuf> {
    let dir = &layout.audit_spool;
    if !dir.is_dir() {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => sync_dir(&layout.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
    let id = random_id()?;
    let mut event = event.clone();
    event.id = Some(id.clone());
    event.at.get_or_insert_with(|| jiff::Timestamp::now().to_string());
    let bytes = serde_json::to_vec(&event).map_err(|e| Error::Internal(format!("audit event: {e}")))?;
    if bytes.len() as u64 > MAX_SPOOL_FILE_BYTES {
        return Err(Error::Internal(format!(
            "audit event of {} bytes is over the spool's limit of {MAX_SPOOL_FILE_BYTES}",
            bytes.len()
        )));
    }
    // Names starting with a dot are being written: the server leaves them alone.
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.json"));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    sync_dir(dir)?;
    Ok(path)
}

/// The events waiting in the spool of `layout` (not yet in the log), oldest first: at most
/// `max`, and whether more wait. Files that would be rejected are left out. Reads only.
pub fn pending(layout: &Layout, max: usize) -> Result<(Vec<AuditEvent>, bool)> {
    let dir = &layout.audit_spool;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut events = Vec::new();
    for entry in entries {
        let name = entry.at(dir)?.file_name();
        if name.as_encoded_bytes().starts_with(b".") || name == REJECTED {
            continue;
        }
        if let Found::Event(_, event) = read_spooled(dir, &name) {
            if events.len() == max {
                return Ok((sorted(events), true));
            }
            events.push(event);
        }
    }
    Ok((sorted(events), false))
}

fn sorted(mut events: Vec<AuditEvent>) -> Vec<AuditEvent> {
    events.sort_by(|a, b| (&a.at, &a.id).cmp(&(&b.at, &b.id)));
    events
}

/// What one round of taking in the spool did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRound {
    /// Events appended to the log.
    pub appended: usize,
    /// Files moved to `audit-spool/rejected/` (each with a `spool-rejected` record).
    pub rejected: usize,
    /// The round stopped at [`MAX_SPOOL_FILES_PER_ROUND`]: more files wait.
    pub more: bool,
}

/// Takes spool files into the log, a bounded round at a time. One per server; it remembers
/// the ids it took in lately, so a file it could not delete is not appended twice.
#[derive(Debug, Default)]
pub struct SpoolIngester {
    taken: VecDeque<String>,
}

/// A spool file as found: taken in, or rejected with the reason.
enum Found {
    Event(String, AuditEvent),
    Rejected(String),
}

impl SpoolIngester {
    /// One round: at most [`MAX_SPOOL_FILES_PER_ROUND`] files, each event appended (in the
    /// order of its `at`, then `id`) and durable before its file is deleted; then the
    /// directory is fsynced. Rejected files get their record first, then are moved.
    pub fn round(&mut self, store: &Store) -> Result<SpoolRound> {
        let dir = store.layout().audit_spool.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SpoolRound::default()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut round = SpoolRound::default();
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.at(&dir)?.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.starts_with(b".") || bytes == REJECTED.as_bytes() {
                continue;
            }
            if names.len() == MAX_SPOOL_FILES_PER_ROUND {
                round.more = true;
                break;
            }
            names.push(name);
        }
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for name in names {
            let text = name.to_string_lossy().into_owned();
            match read_spooled(&dir, &name) {
                Found::Event(id, event) => events.push((text, id, event)),
                Found::Rejected(reason) => rejected.push((name, text, reason)),
            }
        }
        events.sort_by(|a, b| (&a.2.at, &a.1).cmp(&(&b.2.at, &b.1)));
        let mut deleted = false;
        for (name, id, event) in events {
            if !self.taken.contains(&id) {
                store.append_audit(&event)?;
                round.appended += 1;
                self.remember(id);
            }
            std::fs::remove_file(dir.join(&name)).at(&dir.join(&name))?;
            deleted = true;
        }
        if deleted {
            sync_dir(&dir)?;
        }
        for (name, text, reason) in rejected {
            let kept = format!("{}-{}", &random_id()?[..8], shorten(&text));
            if !self.taken.contains(&text) {
                store.append_audit(&AuditEvent::spool_rejected(&text, &kept, &reason))?;
                self.remember(text);
            }
            move_to_rejected(&dir, &name, &kept)?;
            round.rejected += 1;
        }
        Ok(round)
    }

    /// Rounds until the spool is empty (one only if it was; each round is bounded).
    pub fn drain(&mut self, store: &Store) -> Result<SpoolRound> {
        let mut total = SpoolRound::default();
        loop {
            let round = self.round(store)?;
            total.appended += round.appended;
            total.rejected += round.rejected;
            if !round.more {
                return Ok(total);
            }
        }
    }

    fn remember(&mut self, id: String) {
        if self.taken.len() == REMEMBERED_IDS {
            self.taken.pop_front();
        }
        self.taken.push_back(id);
    }
}

/// Reads one spool file: an event whose `id` is the file's name, or why not.
fn read_spooled(dir: &Path, name: &std::ffi::OsStr) -> Found {
    let text = name.to_string_lossy().into_owned();
    let reject = Found::Rejected;
    let Some(id) = text.strip_suffix(".json").filter(|id| is_id(id)) else {
        return reject("name is not <32 hex digits>.json".into());
    };
    let path = dir.join(name);
    // Never follow a link or wait on a FIFO: only a regular file's bytes are taken in.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) => return reject(format!("cannot open: {e}")),
    };
    match file.metadata() {
        Ok(m) if !m.is_file() => return reject("not a regular file".into()),
        Ok(m) if m.len() > MAX_SPOOL_FILE_BYTES => {
            return reject(format!(
                "{} bytes, over the limit of {MAX_SPOOL_FILE_BYTES}",
                m.len()
            ))
        }
        Ok(_) => {}
        Err(e) => return reject(format!("cannot stat: {e}")),
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_SPOOL_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return reject(format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > MAX_SPOOL_FILE_BYTES {
        return reject(format!("over the limit of {MAX_SPOOL_FILE_BYTES} bytes"));
    }
    let mut event: AuditEvent = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(e) => return reject(format!("not an audit event: {e}")),
    };
    if event.id.as_deref() != Some(id) {
        return reject("the event's id is not the file's name".into());
    }
    // Whoever could write the spool could write anything: keep it from driving a terminal.
    for field in [
        &mut event.actor,
        &mut event.action,
        &mut event.target,
        &mut event.origin,
    ] {
        if field.chars().any(char::is_control) {
            *field = field
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
        }
    }
    if let Some(at) = &event.at {
        if at.parse::<jiff::Timestamp>().is_err() {
            return reject("`at` is not an RFC 3339 time".into());
        }
    }
    Found::Event(id.to_string(), event)
}

fn move_to_rejected(dir: &Path, name: &std::ffi::OsStr, kept: &str) -> Result<()> {
    let rejected = dir.join(REJECTED);
    match std::fs::DirBuilder::new().mode(0o700).create(&rejected) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(&rejected, e)),
    }
    std::fs::rename(dir.join(name), rejected.join(kept)).at(&dir.join(name))?;
    sync_dir(&rejected)?;
    sync_dir(dir)
}

/// At most 200 bytes of a file name, so the kept name stays a valid name.
fn shorten(name: &str) -> String {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].replace('/', "_")
}

fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::System(format!("no system randomness: {e}")))?;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let key = dir.path().join("key");
        Store::create(&data, &key).unwrap();
        let store = Store::open(&data, &key, StoreConfig::default()).unwrap();
        (dir, store)
    }

    fn audit_events(store: &Store) -> Vec<AuditEvent> {
        let log = crate::log::reader::LogReader::open(&store.layout().log_dir).unwrap();
        log.records_from(1)
            .unwrap()
            .filter_map(|r| match r.unwrap().leaf.body {
                crate::log::record::LeafBody::Audit { event } => {
                    Some(serde_json::from_slice(&event).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_spooled_event_is_taken_in_once_with_its_time_and_id_and_its_file_goes() {
        let (_dir, store) = store();
        let event = AuditEvent::new("cli:root", "user-add", "alice".into(), "local");
        let path = spool(store.layout(), &event).unwrap();
        let mut ingester = SpoolIngester::default();
        let round = ingester.round(&store).unwrap();
        assert_eq!((round.appended, round.rejected, round.more), (1, 0, false));
        assert!(!path.exists());
        let events = audit_events(&store);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].action.as_str(), events[0].target.as_str()),
            ("user-add", "alice")
        );
        assert!(events[0]
            .at
            .as_deref()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok());
        assert_eq!(path.file_stem().and_then(|s| s.to_str()), events[0].id.as_deref());
        assert_eq!(ingester.round(&store).unwrap(), SpoolRound::default());
        assert_eq!(audit_events(&store).len(), 1);
    }

    #[test]
    fn a_file_whose_delete_failed_is_not_appended_again_by_the_same_ingester() {
        let (_dir, store) = store();
        let path = spool(
            store.layout(),
            &AuditEvent::new("a", "verify", "x".into(), "local"),
        )
        .unwrap();
        let mut ingester = SpoolIngester::default();
        // The id is taken in already (as if its delete had failed): the file only goes.
        let id = path.file_stem().unwrap().to_str().unwrap().to_string();
        ingester.remember(id);
        assert_eq!(ingester.round(&store).unwrap().appended, 0);
        assert!(!path.exists());
        assert!(audit_events(&store).is_empty());
    }

    #[test]
    fn garbage_big_and_misnamed_files_are_moved_aside_and_each_is_recorded() {
        let (_dir, store) = store();
        let dir = store.layout().audit_spool.clone();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.json", "a".repeat(32))), b"{not json").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        std::fs::write(
            dir.join(format!("{}.json", "b".repeat(32))),
            vec![b' '; MAX_SPOOL_FILE_BYTES as usize + 1],
        )
        .unwrap();
        std::fs::write(dir.join(".in-progress.tmp"), b"half").unwrap();
        let round = SpoolIngester::default().round(&store).unwrap();
        assert_eq!((round.appended, round.rejected), (0, 3));
        let kept = std::fs::read_dir(dir.join(REJECTED)).unwrap().count();
        assert_eq!(kept, 3);
        assert!(
            dir.join(".in-progress.tmp").exists(),
            "files being written are left alone"
        );
        let events = audit_events(&store);
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e.action == "spool-rejected"));
        let reasons: Vec<&str> = events.iter().map(|e| e.target.as_str()).collect();
        assert!(
            reasons.iter().any(|t| t.contains("not an audit event")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|t| t.contains("over the limit")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|t| t.contains("notes.txt") && t.contains("name")),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_round_is_bounded_and_draining_takes_in_the_rest() {
        let (_dir, store) = store();
        for i in 0..MAX_SPOOL_FILES_PER_ROUND + 3 {
            spool(
                store.layout(),
                &AuditEvent::new("a", "search", i.to_string(), "local"),
            )
            .unwrap();
        }
        let mut ingester = SpoolIngester::default();
        let first = ingester.round(&store).unwrap();
        assert_eq!((first.appended, first.more), (MAX_SPOOL_FILES_PER_ROUND, true));
        assert_eq!(ingester.drain(&store).unwrap().appended, 3);
        assert_eq!(audit_events(&store).len(), MAX_SPOOL_FILES_PER_ROUND + 3);
    }

    #[test]
    fn record_appends_when_it_can_take_the_lock_and_spools_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let key = dir.path().join("key");
        Store::create(&data, &key).unwrap();
        let layout = Layout::new(&data);
        let event = AuditEvent::new("cli:root", "verify", "ok".into(), "local");
        assert!(matches!(
            record(&layout, &key, &event).unwrap(),
            Recorded::Appended(_)
        ));
        let store = Store::open(&data, &key, StoreConfig::default()).unwrap();
        let Recorded::Spooled(path) = record(&layout, &key, &event).unwrap() else {
            panic!("the lock is held: the event must be spooled");
        };
        assert!(path.exists());
        drop(store);
        // The next direct record takes in the spooled one first.
        assert!(matches!(
            record(&layout, &key, &event).unwrap(),
            Recorded::Appended(_)
        ));
        assert!(!path.exists());
        let store = Store::open(&data, &key, StoreConfig::default()).unwrap();
        let events = audit_events(&store);
        assert_eq!(events.len(), 3);
        assert!(events[0].id.is_none() && events[1].id.is_some() && events[2].id.is_none());
    }
}
