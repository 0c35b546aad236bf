//! Export bundles written by the process that has the store open (the web's `POST /export`):
//! the newest records are put under a checkpoint and the tree cache is made durable first, so
//! the bundle proves what was just searched against the files it reads its proofs from.
//! `mailvault export` on a closed store reads the same files without this step.

use std::io::{Seek, Write};

use super::Store;
use crate::export::bundle::{BundleRequest, Export, Exported};
use crate::Result;

impl Store {
    /// Writes the bundle of `request` (one volume) to `out`.
    pub fn export_bundle<W: Write + Seek>(&self, request: &BundleRequest, out: W) -> Result<Exported> {
        self.shared.checkpoint()?;
        {
            let mut writer = self.shared.usable_writer()?;
            if writer.tree.has_unsynced() {
                writer.tree.sync()?;
            }
        }
        Export::open_with(self.layout(), request, self.log_reader()?)?.write_only_volume(out)
    }
}
