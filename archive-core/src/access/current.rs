//! The users file as it is now, cheaply: sessions (web, IMAP) outlive their login and ask at
//! every request who their user is now ([`super::LoginGate::recheck`]), so reading and parsing
//! `users.json` each time would cost every request a file read and a JSON parse of all users.
//! [`UsersNow`] keeps the last parse and re-reads only when the file's metadata changed: the
//! file is only ever replaced whole, by rename (`users_file`), so a change is a new inode with a
//! new change time, and one `stat` tells.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::users_file::USERS_FILE;
use super::Users;
use crate::{Error, Result};

/// What identifies one version of the users file (`None`: there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl Stamp {
    /// The stamp of the file at `path` now.
    fn of(path: &Path) -> Result<Stamp> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Stamp(Some((
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stamp(None)),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// The users of one data directory, re-read when the file changed.
#[derive(Debug)]
pub(crate) struct UsersNow {
    dir: PathBuf,
    held: Mutex<Option<(Stamp, Arc<Users>)>>,
}

impl UsersNow {
    /// The users of `<dir>/users.json`, not read yet.
    pub(crate) fn new(dir: &Path) -> UsersNow {
        UsersNow {
            dir: dir.to_path_buf(),
            held: Mutex::new(None),
        }
    }

    /// The users as the file says now: one `stat`, and a read only when the file changed since
    /// the last one. The stamp is taken before reading, so a change during the read is seen
    /// (as a stamp that differs) at the next call.
    pub(crate) fn get(&self) -> Result<Arc<Users>> {
        let stamp = Stamp::of(&self.dir.join(USERS_FILE))?;
        if let Some((held, users)) = &*self.held.lock().unwrap_or_else(|p| p.into_inner()) {
            if *held == stamp {
                return Ok(Arc::clone(users));
            }
        }
        let users = Arc::new(Users::load(&self.dir)?);
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, Arc::clone(&users)));
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Role, UserRecord};

    #[test]
    fn a_change_of_the_file_is_seen_at_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let now = UsersNow::new(dir.path());
        assert!(now.get().unwrap().get("alice").is_none(), "no file, no users");
        let role = Role::user(["alice@example.com"]).unwrap();
        Users::update(dir.path(), |u| {
            u.add(UserRecord::new("alice", role, "pw pw pw pw")?)
        })
        .unwrap();
        let first = now.get().unwrap();
        assert!(!first.get("alice").unwrap().disabled());
        assert!(
            Arc::ptr_eq(&first, &now.get().unwrap()),
            "unchanged: not read again"
        );
        Users::update(dir.path(), |u| u.set_disabled("alice", true)).unwrap();
        assert!(now.get().unwrap().get("alice").unwrap().disabled());
    }
}
