//! The image: the durable namespace as a plain directory tree on the host, its files hard
//! links to their objects. Read at mount, written when the disk stops.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{Body, Model, Node, Stats, ROOT};

impl Model {
    /// The disk as `image` holds it, everything durable; `objects` is emptied and refilled
    /// with one hard link per file inode of the image.
    pub fn load(image: &Path, objects: &Path) -> io::Result<Model> {
        match std::fs::remove_dir_all(objects) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(objects)?;
        let mut model = Model {
            objects: objects.to_path_buf(),
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            powered: true,
            read_faults: Vec::new(),
            full_fsync_faults: Vec::new(),
            lost_fsyncs: Vec::new(),
            stats: Stats::default(),
        };
        let mode = std::fs::metadata(image)?.permissions().mode() & 0o7777;
        model.nodes.insert(ROOT, Node::dir(ROOT, mode));
        let mut by_host_inode: HashMap<(u64, u64), u64> = HashMap::new();
        let mut stack = vec![(image.to_path_buf(), ROOT)];
        while let Some((dir, ino)) = stack.pop() {
            let mut names = BTreeMap::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = std::fs::symlink_metadata(entry.path())?;
                let mode = meta.permissions().mode() & 0o7777;
                let child = if meta.is_dir() {
                    let child = model.new_ino();
                    model.nodes.insert(child, Node::dir(ino, mode));
                    stack.push((entry.path(), child));
                    child
                } else if meta.is_file() {
                    match by_host_inode.get(&(meta.dev(), meta.ino())) {
                        Some(&child) => {
                            model.node_mut(child).nlink += 1;
                            child
                        }
                        None => {
                            let child = model.new_ino();
                            std::fs::hard_link(entry.path(), model.object(child))?;
                            let mut node = Node::file(mode);
                            if let Body::File(f) = &mut node.body {
                                f.len = meta.len();
                                f.durable_len = meta.len();
                            }
                            model.nodes.insert(child, node);
                            by_host_inode.insert((meta.dev(), meta.ino()), child);
                            child
                        }
                    }
                } else {
                    return Err(io::Error::other(format!(
                        "{}: only files and directories are simulated",
                        entry.path().display()
                    )));
                };
                names.insert(entry.file_name(), child);
            }
            if let Body::Dir(d) = &mut model.node_mut(ino).body {
                d.entries = names.clone();
                d.durable = names;
            }
        }
        Ok(model)
    }

    /// Writes the durable namespace out as the image: a directory tree whose files are hard
    /// links to their objects, with their durable permission bits.
    pub fn write_image(&self, image: &Path) -> io::Result<()> {
        for entry in std::fs::read_dir(image)? {
            let path = entry?.path();
            if std::fs::symlink_metadata(&path)?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        let mut stack = vec![(image.to_path_buf(), ROOT)];
        let mut dirs = Vec::new();
        while let Some((path, ino)) = stack.pop() {
            let Body::Dir(d) = &self.node(ino).map_err(io::Error::from_raw_os_error)?.body else {
                continue;
            };
            for (name, child) in &d.durable {
                let target = path.join(name);
                let node = self.node(*child).map_err(io::Error::from_raw_os_error)?;
                match &node.body {
                    Body::Dir(_) => {
                        std::fs::create_dir(&target)?;
                        dirs.push((target.clone(), node.durable_mode));
                        stack.push((target, *child));
                    }
                    Body::File(_) => {
                        let object = self.object(*child);
                        if !object.exists() {
                            File::create(&object)?;
                        }
                        std::fs::hard_link(&object, &target)?;
                        std::fs::set_permissions(
                            &target,
                            std::fs::Permissions::from_mode(node.durable_mode),
                        )?;
                    }
                }
            }
        }
        // Directory modes last: a read-only directory would refuse its own entries.
        for (dir, mode) in dirs {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}
