//! The directory a restore builds the store in: `.<target>.restoring-<pid>` next to the
//! target, on the same file system, renamed to the target when everything verified and is
//! durable; removed if the restore fails. Nothing half-restored is ever at the target path.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use archive_core::store::{Layout, StoreIdentity};

/// Refuses a target that exists and is not an empty directory.
pub fn refuse_non_empty(target: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: restore builds a new store only into an empty or new directory",
                    target.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| target.display().to_string()),
    }
}

/// The staging directory; removed on drop unless committed.
pub struct Staging {
    layout: Layout,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates it (and the target's parent, if missing), with an empty `log/`.
    pub fn create(target: &Path) -> anyhow::Result<Staging> {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a directory name", target.display()))?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).with_context(|| parent.display().to_string())?;
        let dir = parent.join(format!(".{name}.restoring-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| dir.display().to_string())?;
        let staging = Staging {
            layout: Layout::new(&dir),
            target: target.to_path_buf(),
            committed: false,
        };
        let log = &staging.layout.log_dir;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(log)
            .with_context(|| log.display().to_string())?;
        Ok(staging)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `store.json` and `signing.pub` of the store being restored.
    pub fn write_identity(&self, origin: &str, public_key: &str) -> anyhow::Result<()> {
        let mut identity = StoreIdentity::generate()?;
        identity.origin = origin.to_string();
        let public = &self.layout.public_key;
        std::fs::write(public, format!("{public_key}\n")).with_context(|| public.display().to_string())?;
        self.layout.write_identity(&identity)?;
        Ok(())
    }

    /// Renames it to the target (an empty directory there is replaced) and makes that durable.
    pub fn commit(mut self) -> anyhow::Result<()> {
        sync_dir(&self.layout.log_dir)?;
        sync_dir(&self.layout.dir)?;
        std::fs::rename(&self.layout.dir, &self.target).with_context(|| {
            format!(
                "moving {} to {}",
                self.layout.dir.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        if let Some(parent) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = std::fs::remove_dir_all(&self.layout.dir) {
                eprintln!(
                    "mailvault: note: the unfinished restore in {} could not be removed ({e})",
                    self.layout.dir.display()
                );
            }
        }
    }
}

/// Copies a surviving segment file into the log: writable (0600) only if the original was
/// (the active segment the store will go on appending to), else 0400 like every sealed one.
pub fn copy_tail(from: &Path, to: &Path) -> anyhow::Result<()> {
    let writable = std::fs::metadata(from)
        .with_context(|| from.display().to_string())?
        .permissions()
        .mode()
        & 0o200
        != 0;
    let mut source = std::fs::File::open(from).with_context(|| from.display().to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| to.display().to_string())?;
    std::io::copy(&mut source, &mut file).with_context(|| format!("copying {}", from.display()))?;
    file.sync_all().with_context(|| to.display().to_string())?;
    if !writable {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o400))
            .with_context(|| to.display().to_string())?;
    }
    Ok(())
}

/// Copies the signing key's backup to `to`: a new file, mode 0600, durable.
pub fn copy_key(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| from.display().to_string())?;
    if let Some(dir) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| dir.display().to_string())?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("writing the signing key to {}", to.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| to.display().to_string())?;
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| dir.display().to_string())
}
