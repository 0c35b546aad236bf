//! The file an export is written to: the bundle itself, or — when the selection needs several
//! volumes — a container ZIP holding each volume stored under `volumes/` and a README
//! (archive_verify::bundle::VOLUMES_DIR). Volumes are written one at a time to an anonymous
//! file and copied in, so memory holds one volume's ZIP directory at most, and disk one
//! volume beside the container.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use archive_verify::bundle::{container_readme, Selection, README, VOLUMES_DIR};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::bundle::{Export, Exported};
use super::tail_buffer::TailBuffer;
use crate::{Error, Result};

/// What an export wrote, over all its volumes.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Volumes written: 1 for a plain bundle.
    pub volumes: u64,
    /// Messages in all of them.
    pub messages: u64,
    /// Bytes of message content in all of them.
    pub content_bytes: u64,
    /// The tree size all of them prove against.
    pub tree_size: u64,
    /// What the export proves about completeness, in words.
    pub completeness: String,
}

impl Export<'_> {
    /// Writes the export to `out` (a new file: the caller renames it into place): the bundle,
    /// or a container of the volumes, named `volumes/<name>.<i>-of-<n>.zip` (`name` reduced
    /// to `[A-Za-z0-9._-]`); volumes are spooled in `spool_dir` one at a time.
    pub fn write<W: Write + Seek>(&self, out: W, name: &str, spool_dir: &Path) -> Result<ExportSummary> {
        let count = self.volumes();
        if count == 1 {
            let exported = self.write_volume(0, out)?;
            let mut summary = self.summary(1);
            summary.add(&exported);
            summary.completeness = exported.manifest.completeness;
            return Ok(summary);
        }
        let name = entry_stem(name);
        let width = count.to_string().len();
        let mut zip = ZipWriter::new(TailBuffer::new(out));
        let readme = container_readme(usize::try_from(count).unwrap_or(usize::MAX));
        zip.start_file(README, SimpleFileOptions::default())
            .map_err(zip_error)?;
        zip.write_all(readme.as_bytes()).map_err(write_error)?;
        let mut summary = self.summary(count);
        for index in 0..count {
            let mut spool = tempfile::tempfile_in(spool_dir)
                .map_err(|e| Error::System(format!("temporary file in {}: {e}", spool_dir.display())))?;
            let exported = self.write_volume(index, &mut spool)?;
            let len = spool.seek(SeekFrom::End(0)).map_err(write_error)?;
            spool.seek(SeekFrom::Start(0)).map_err(write_error)?;
            // Stored, so a verifier reads the volume in place.
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .large_file(len >= u32::MAX as u64);
            let entry = format!("{VOLUMES_DIR}{name}.{:0width$}-of-{count}.zip", index + 1);
            zip.start_file(entry, options).map_err(zip_error)?;
            std::io::copy(&mut spool, &mut zip).map_err(write_error)?;
            summary.add(&exported);
        }
        zip.finish().map_err(zip_error)?.flush().map_err(write_error)?;
        Ok(summary)
    }

    fn summary(&self, volumes: u64) -> ExportSummary {
        let completeness = match self.selection() {
            Selection::Range {
                first_seq, last_seq, ..
            } => format!(
                "complete with all {volumes} volumes: every record of seq {first_seq}..={last_seq}, proven by their range proofs"
            ),
            Selection::Filter { .. } => {
                "authenticity of each message only: a filter's completeness cannot be proven offline".into()
            }
        };
        ExportSummary {
            volumes,
            messages: 0,
            content_bytes: 0,
            tree_size: self.tree_size(),
            completeness,
        }
    }
}

impl ExportSummary {
    fn add(&mut self, volume: &Exported) {
        self.messages += volume.manifest.message_count;
        self.content_bytes += volume.content_bytes;
    }
}

/// `name` with every character outside `[A-Za-z0-9._-]` replaced, not starting with a dot,
/// at most 64 characters; "export" when nothing is left.
fn entry_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .take(64)
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                true => c,
                false => '_',
            },
        )
        .collect();
    let stem = stem.trim_start_matches('.');
    match stem.is_empty() {
        true => "export".into(),
        false => stem.into(),
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::System(format!("writing the export: {e}"))
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::System(format!("writing the export: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_entry_names_are_safe_whatever_the_file_is_called() {
        assert_eq!(entry_stem("2025"), "2025");
        assert_eq!(entry_stem("Prüfung 2025/Q1"), "Pr_fung_2025_Q1");
        assert_eq!(entry_stem("..hidden"), "hidden");
        assert_eq!(entry_stem(""), "export");
        assert_eq!(entry_stem(&"x".repeat(500)).len(), 64);
        for name in ["2025", "Prüfung 2025/Q1", "..hidden", ""] {
            let entry = format!("{VOLUMES_DIR}{}.01-of-12.zip", entry_stem(name));
            assert!(archive_verify::bundle::is_volume_entry(&entry), "{entry}");
        }
    }
}
