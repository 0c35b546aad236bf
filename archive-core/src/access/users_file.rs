//! `<data>/users.json`: the local users on disk (format in docs/OPERATIONS.md §Users).
//!
//! Readers (the front doors, at each login) read it without a lock: it is only ever replaced
//! whole, by rename, so they see the old or the new file, never half of one. Writers take an
//! advisory lock on `<data>/users.lock` around read-modify-write ([`Users::update`]), so
//! concurrent `mailvault user …` commands never lose each other's changes. The file is
//! separate from the store and its lock, so users can be managed while `serve` runs.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::names::normalize_user_name;
use super::password::check_stored_hash;
use super::tokens::StoredToken;
use super::users::{AuditorDomains, Role, UserRecord, Users};
use crate::{Error, IoContext, Result};

/// The users file, inside the data directory.
pub const USERS_FILE: &str = "users.json";
/// The advisory lock writers hold, inside the data directory.
pub const USERS_LOCK: &str = "users.lock";
/// The file's format version; a reader refuses others.
const FORMAT: u32 = 1;

/// The file's top level, as read: entries stay JSON values so each can fail on its own,
/// with its number and name in the message.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: u32,
    users: Vec<serde_json::Value>,
}

#[derive(serde::Serialize)]
struct FileOut {
    format: u32,
    users: Vec<Entry>,
}

/// One user as stored.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: EntryRole,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    domains: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all_domains: bool,
    #[serde(default)]
    disabled: bool,
    password_hash: String,
    created: Timestamp,
    updated: Timestamp,
    /// API tokens, by hash (absent in files from before tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<StoredToken>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntryRole {
    User,
    Auditor,
}

impl Users {
    /// Reads `<dir>/users.json`; no file means no users. Any bad entry fails the whole load,
    /// with an error naming the file and the entry.
    pub fn load(dir: &Path) -> Result<Users> {
        let path = dir.join(USERS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Changes the users of `<dir>` under the users lock: loads the file, applies `change`,
    /// and writes the file back (atomically) if `change` succeeded and changed something.
    /// On error nothing is written.
    pub fn update<T>(dir: &Path, change: impl FnOnce(&mut Users) -> Result<T>) -> Result<T> {
        let _lock = lock(dir)?;
        let mut users = Users::load(dir)?;
        users.changed = false;
        let outcome = change(&mut users)?;
        if users.changed {
            users.save(dir)?;
        }
        Ok(outcome)
    }

    /// Replaces the file: a new file of mode 0600 in the same directory, fsynced, renamed over
    /// the old one, directory fsynced. Callers hold the users lock.
    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(USERS_FILE);
        let tmp = dir.join(format!("{USERS_FILE}.tmp"));
        let file = FileOut {
            format: FORMAT,
            users: self.iter().map(entry).collect(),
        };
        let json =
            serde_json::to_string_pretty(&file).map_err(|e| Error::Internal(format!("users file: {e}")))?;
        // A leftover from a crash may have another mode; a fresh file gets ours.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&tmp, e)),
            _ => {}
        }
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        out.set_permissions(std::fs::Permissions::from_mode(0o600))
            .at(&tmp)?;
        out.write_all(json.as_bytes()).at(&tmp)?;
        out.write_all(b"\n").at(&tmp)?;
        out.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        File::open(dir).and_then(|d| d.sync_all()).at(dir)
    }
}

/// Takes the users lock (blocking; released when the returned file closes, so a crashed
/// process leaves no stale lock).
fn lock(dir: &Path) -> Result<File> {
    let path: PathBuf = dir.join(USERS_LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .at(&path)?;
    file.lock().at(&path)?;
    Ok(file)
}

fn parse(path: &Path, text: &str) -> Result<Users> {
    let bad = |reason: String| Error::Format {
        path: path.to_path_buf(),
        reason,
    };
    let file: FileIn = serde_json::from_str(text).map_err(|e| bad(format!("not a users file: {e}")))?;
    if file.format != FORMAT {
        return Err(bad(format!(
            "users file format {} is not supported by this build (expects {FORMAT})",
            file.format
        )));
    }
    let mut users = Users::default();
    for (i, value) in file.users.into_iter().enumerate() {
        let number = i + 1;
        let label = match value.get("name").and_then(|n| n.as_str()) {
            Some(name) => format!("user {number} ({name:?})"),
            None => format!("user {number}"),
        };
        let record = serde_json::from_value::<Entry>(value)
            .map_err(|e| e.to_string())
            .and_then(record)
            .map_err(|why| bad(format!("{label}: {why}")))?;
        if users.by_name.contains_key(&record.name) {
            return Err(bad(format!("{label}: the name is used by an earlier user")));
        }
        users.by_name.insert(record.name.clone(), record);
    }
    Ok(users)
}

/// Checks a stored entry as strictly as a new user.
fn record(entry: Entry) -> std::result::Result<UserRecord, String> {
    let name = normalize_user_name(&entry.name).map_err(|e| e.to_string())?;
    let role = match entry.role {
        EntryRole::User if !entry.domains.is_empty() || entry.all_domains => {
            return Err("a user has addresses, not domains".into())
        }
        EntryRole::User => Role::user(&entry.addresses),
        EntryRole::Auditor if !entry.addresses.is_empty() => {
            return Err("an auditor has domains, not addresses".into())
        }
        EntryRole::Auditor if entry.all_domains && !entry.domains.is_empty() => {
            return Err("all_domains and domains exclude each other".into())
        }
        EntryRole::Auditor if entry.all_domains => Ok(Role::auditor_all()),
        EntryRole::Auditor => Role::auditor_of(&entry.domains),
    }
    .map_err(|e| e.to_string())?;
    check_stored_hash(&entry.password_hash)?;
    Ok(UserRecord {
        name,
        role,
        disabled: entry.disabled,
        password_hash: entry.password_hash,
        created: entry.created,
        updated: entry.updated,
        tokens: entry.tokens,
    })
}

fn entry(user: &UserRecord) -> Entry {
    let (role, addresses, domains, all_domains) = match user.role() {
        Role::User { addresses } => (
            EntryRole::User,
            addresses.iter().cloned().collect(),
            Vec::new(),
            false,
        ),
        Role::Auditor {
            domains: AuditorDomains::All,
        } => (EntryRole::Auditor, Vec::new(), Vec::new(), true),
        Role::Auditor {
            domains: AuditorDomains::Only(domains),
        } => (
            EntryRole::Auditor,
            Vec::new(),
            domains.iter().cloned().collect(),
            false,
        ),
    };
    Entry {
        name: user.name().into(),
        role,
        addresses,
        domains,
        all_domains,
        disabled: user.disabled(),
        password_hash: user.password_hash().into(),
        created: user.created(),
        updated: user.updated(),
        tokens: user.tokens().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery";

    fn add(dir: &Path, name: &str, role: Role) {
        let user = UserRecord::new(name, role, PASSWORD).unwrap();
        Users::update(dir, |users| users.add(user)).unwrap();
    }

    fn write(dir: &Path, json: &str) {
        std::fs::write(dir.join(USERS_FILE), json).unwrap();
    }

    #[test]
    fn users_round_trip_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(Users::load(tmp.path()).unwrap().iter().count(), 0);
        add(tmp.path(), "alice", Role::user(["alice@example.com"]).unwrap());
        add(
            tmp.path(),
            "pm",
            Role::auditor_of(["example.com", "example.org"]).unwrap(),
        );
        add(tmp.path(), "root", Role::auditor_all());
        Users::update(tmp.path(), |u| u.set_disabled("pm", true)).unwrap();
        let loaded = Users::load(tmp.path()).unwrap();
        let names: Vec<_> = loaded.iter().map(|u| u.name()).collect();
        assert_eq!(names, ["alice", "pm", "root"]);
        assert!(loaded.get("pm").unwrap().disabled());
        assert_eq!(loaded.get("root").unwrap().role(), &Role::auditor_all());
        assert!(loaded.authenticate("alice", PASSWORD).is_ok());
        // What is written reads back as the same users, and writes back the same bytes.
        let bytes = std::fs::read(tmp.path().join(USERS_FILE)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"format\": 1") && text.contains("\"all_domains\": true"),
            "{text}"
        );
        Users::load(tmp.path()).unwrap().save(tmp.path()).unwrap();
        assert_eq!(std::fs::read(tmp.path().join(USERS_FILE)).unwrap(), bytes);
    }

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        // A stale temp file from a crash, world-readable: must not become the users file's mode.
        let stale = tmp.path().join("users.json.tmp");
        std::fs::write(&stale, "junk").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
        add(tmp.path(), "alice", Role::user(["alice@example.com"]).unwrap());
        let mode = std::fs::metadata(tmp.path().join(USERS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!stale.exists());
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        add(tmp.path(), "alice", Role::user(["alice@example.com"]).unwrap());
        let before = std::fs::read(tmp.path().join(USERS_FILE)).unwrap();
        let dup = UserRecord::new("ALICE", Role::auditor_all(), PASSWORD).unwrap();
        assert!(Users::update(tmp.path(), |u| u.add(dup)).is_err());
        assert!(Users::update(tmp.path(), |u| u.set_disabled("bob", true)).is_err());
        // Disabling twice changes nothing the second time: the file is not rewritten.
        Users::update(tmp.path(), |u| u.set_disabled("alice", true)).unwrap();
        let disabled = std::fs::read(tmp.path().join(USERS_FILE)).unwrap();
        assert_ne!(disabled, before);
        std::thread::sleep(std::time::Duration::from_millis(10));
        let modified = || {
            std::fs::metadata(tmp.path().join(USERS_FILE))
                .unwrap()
                .modified()
                .unwrap()
        };
        let at = modified();
        Users::update(tmp.path(), |u| u.set_disabled("alice", true)).unwrap();
        assert_eq!(modified(), at);
    }

    #[test]
    fn bad_files_are_refused_with_the_file_and_entry_named() {
        let tmp = tempfile::tempdir().unwrap();
        add(tmp.path(), "alice", Role::user(["alice@example.com"]).unwrap());
        let good = std::fs::read_to_string(tmp.path().join(USERS_FILE)).unwrap();
        let hash = Users::load(tmp.path())
            .unwrap()
            .get("alice")
            .unwrap()
            .password_hash()
            .to_string();
        let user = |fields: &str| {
            format!(
                r#"{{"format":1,"users":[{{"name":"bob","role":"user","addresses":["bob@x.org"],"password_hash":"{hash}","created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z"}},{{{fields}}}]}}"#
            )
        };
        let times = r#""created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z""#;
        let cases = [
            ("not json".to_string(), "not a users file"),
            (
                r#"{"format":2,"users":[]}"#.to_string(),
                "format 2 is not supported",
            ),
            (
                user(&format!(
                    r#""name":"Bob","role":"user","addresses":["b@x.org"],"password_hash":"{hash}",{times}"#
                )),
                "user 2 (\"Bob\"): the name is used by an earlier user",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"admin","password_hash":"{hash}",{times}"#
                )),
                "user 2 (\"carol\"): unknown variant `admin`",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"user","password_hash":"{hash}",{times}"#
                )),
                "user 2 (\"carol\"): a user needs at least one address",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"user","addresses":["carol"],"password_hash":"{hash}",{times}"#
                )),
                "user 2 (\"carol\"): address \"carol\"",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"auditor","password_hash":"{hash}",{times}"#
                )),
                "user 2 (\"carol\"): an auditor needs at least one domain",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"auditor","domains":["x.org"],"all_domains":true,"password_hash":"{hash}",{times}"#
                )),
                "all_domains and domains exclude each other",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"user","addresses":["c@x.org"],"password_hash":"secret",{times}"#
                )),
                "user 2 (\"carol\"): password_hash is not a PHC string",
            ),
            (
                user(&format!(
                    r#""name":"carol","role":"user","addresses":["c@x.org"],"password_hash":"{hash}","shell":"/bin/sh",{times}"#
                )),
                "user 2 (\"carol\"): unknown field `shell`",
            ),
            (user(r#""role":"user""#), "user 2: missing field `name`"),
            (
                user(&format!(
                    r#""name":"carol","role":"user","addresses":["c@x.org"],"password_hash":"{hash}","created":"yesterday","updated":"2026-01-01T00:00:00Z""#
                )),
                "user 2 (\"carol\"):",
            ),
        ];
        for (json, expect) in cases {
            write(tmp.path(), &json);
            let e = Users::load(tmp.path()).unwrap_err().to_string();
            assert!(
                e.starts_with(&tmp.path().join(USERS_FILE).display().to_string()),
                "{e}"
            );
            assert!(e.contains(expect), "{json}\n→ {e}\nexpected {expect:?}");
            // And nothing can be changed through a file that does not load.
            let carol = UserRecord::new("carol", Role::auditor_all(), PASSWORD).unwrap();
            assert!(Users::update(tmp.path(), |u| u.add(carol)).is_err());
            assert_eq!(
                std::fs::read_to_string(tmp.path().join(USERS_FILE)).unwrap(),
                json
            );
        }
        write(tmp.path(), &good);
        Users::load(tmp.path()).unwrap();
    }

    #[test]
    fn concurrent_updates_do_not_lose_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let users: Vec<_> = (0..4)
            .map(|i| {
                let role = Role::user([format!("u{i}@example.com")]).unwrap();
                UserRecord::new(&format!("user{i}"), role, PASSWORD).unwrap()
            })
            .collect();
        std::thread::scope(|s| {
            for user in users {
                s.spawn(move || {
                    Users::update(dir, |users| {
                        // Widen the read-modify-write window: without the lock, every
                        // thread would read the same file and the last rename would win.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        users.add(user)
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(Users::load(dir).unwrap().iter().count(), 4);
    }
}
