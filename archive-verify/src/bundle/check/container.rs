//! A container: one ZIP holding an export's volumes (`volumes/<name>.zip`, stored) and a
//! README. Each volume is read in place through a window on the file — nothing is unpacked,
//! and one volume's directory is in memory at a time. What the container itself may hold is
//! checked here; the volumes as a set by `volumes.rs`.

use super::*;

/// Whether the ZIP is a container rather than a bundle: no manifest, and volume entries.
pub(super) fn is_container(zip: &Bundle) -> bool {
    zip.index_for_name(MANIFEST).is_none()
        && zip
            .file_names()
            .any(|n| n.is_ok_and(|n| n.starts_with(VOLUMES_DIR)))
}

/// Checks the container named `name` (the open `zip` of `file`) and each volume in it, in
/// the container's order.
pub(super) fn verify_container(
    name: &str,
    file: &BundleFile,
    mut zip: Bundle,
    options: &Options,
    on_progress: &mut dyn FnMut(&str, &Report, Progress),
) -> Vec<(String, Report)> {
    let mut own = Report::default();
    // Each volume's entry name and where its bytes are in the file.
    let mut volumes: Vec<(String, u64, u64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let entry = match zip.by_index_raw(i) {
            Ok(entry) => entry,
            Err(e) => {
                own.problem(format!("an entry of the container is unreadable: {e}"));
                continue;
            }
        };
        let Ok(entry_name) = entry.name().map(|n| n.to_string()) else {
            own.problem("a file name in the container is unreadable");
            continue;
        };
        if !seen.insert(entry_name.clone()) {
            own.problem(format!("the container holds {entry_name:?} twice"));
            continue;
        }
        if entry_name == README || entry_name == VOLUMES_DIR {
            continue;
        }
        if !is_volume_entry(&entry_name) {
            own.problem(format!(
                "unexpected file {entry_name:?} in the container: it holds only {VOLUMES_DIR}*.zip and {README}"
            ));
            continue;
        }
        match (entry.compression(), entry.encrypted(), entry.data_start()) {
            (zip::CompressionMethod::Stored, false, Some(start)) => {
                volumes.push((entry_name, start, entry.compressed_size()))
            }
            _ => own.problem(format!(
                "{entry_name}: compressed or encrypted; a container stores its volumes as they are \
                 (unpack it and give the volumes to verify-bundle)"
            )),
        }
    }
    match read_small(&mut zip, README) {
        Ok(text) if text == container_readme(volumes.len()).as_bytes() => {}
        Ok(_) => own.problem(format!(
            "{README} of the container is not the text for {} volumes: it was edited",
            volumes.len()
        )),
        Err(e) => own.problem(format!("{README} of the container: {e}")),
    }
    drop(zip);
    on_progress(name, &own, Progress::Done);
    let mut reports = vec![(name.to_string(), own)];
    for (entry, start, len) in volumes {
        let volume_name = format!("{name}:{entry}");
        let report = match open_zip(file.window(start, len)) {
            Ok(volume) => verify_zip(volume, options, &mut |r, m| {
                on_progress(&volume_name, r, Progress::Message(m))
            }),
            Err(report) => *report,
        };
        on_progress(&volume_name, &report, Progress::Done);
        reports.push((volume_name, report));
    }
    reports
}
