//! The model's rules, without the kernel.

use super::*;

fn disk() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("image");
    let objects = tmp.path().join("objects");
    std::fs::create_dir(&image).unwrap();
    (tmp, image, objects)
}

fn reload(model: &Model, image: &Path, objects: &Path) -> Model {
    model.write_image(image).unwrap();
    Model::load(image, objects).unwrap()
}

fn content(model: &mut Model, path: &str) -> Option<Vec<u8>> {
    let ino = model.resolve(Path::new(path)).ok()?;
    Some(model.read(ino, 0, u32::MAX).unwrap())
}

#[test]
fn only_what_was_synced_survives_a_cut() {
    let (_tmp, image, objects) = disk();
    let mut m = Model::load(&image, &objects).unwrap();
    let log = m.mkdir(ROOT, OsStr::new("log"), 0o700).unwrap();
    let target = m.fsync_target(ROOT).unwrap();
    m.fsync(ROOT, target, false).unwrap();
    let seg = m.create_file(log, OsStr::new("1.seg"), 0o600).unwrap();
    m.write(seg, 0, b"header").unwrap();
    let target = m.fsync_target(seg).unwrap();
    m.fsync(seg, target, true).unwrap();
    // Synced data, but the name is not: the file is lost.
    m.cut(Tear::DropAll, &mut Rng::new(1)).unwrap();
    let mut after = reload(&m, &image, &objects);
    assert_eq!(content(&mut after, "log/1.seg"), None);
    assert!(after.resolve(Path::new("log")).is_ok());

    let log = after.resolve(Path::new("log")).unwrap();
    let seg = after.create_file(log, OsStr::new("1.seg"), 0o600).unwrap();
    after.write(seg, 0, b"header").unwrap();
    let t = after.fsync_target(seg).unwrap();
    after.fsync(seg, t, true).unwrap();
    let t = after.fsync_target(log).unwrap();
    after.fsync(log, t, false).unwrap();
    after.write(seg, 6, b"+record").unwrap();
    assert_eq!(content(&mut after, "log/1.seg").unwrap(), b"header+record");
    after.cut(Tear::DropAll, &mut Rng::new(2)).unwrap();
    let mut again = reload(&after, &image, &objects);
    assert_eq!(content(&mut again, "log/1.seg").unwrap(), b"header");
}

/// Every state a torn cut may leave of "0123" (synced) followed by the pending writes
/// "4567" at 4 and "far" at 100 and a truncation to 6 ("012345" is among the 4..=7).
fn possible_after_tear(got: &[u8]) -> bool {
    let synced_prefix = got.starts_with(b"0123");
    let is_prefix_or_zeros = |part: &[u8], of: &[u8]| of.starts_with(part) || part.iter().all(|b| *b == 0);
    synced_prefix
        && match got.len() {
            4..=7 => is_prefix_or_zeros(&got[4..], b"4567"),
            8 => &got[4..] == b"4567",
            101..=103 => {
                &got[4..8] == b"4567"
                    && got[8..100].iter().all(|b| *b == 0)
                    && is_prefix_or_zeros(&got[100..], b"far")
            }
            _ => false,
        }
}

#[test]
fn a_torn_cut_keeps_a_prefix_of_the_pending_writes() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..300 {
        let (_tmp, image, objects) = disk();
        let mut m = Model::load(&image, &objects).unwrap();
        let f = m.create_file(ROOT, OsStr::new("f"), 0o600).unwrap();
        let t = m.fsync_target(ROOT).unwrap();
        m.fsync(ROOT, t, false).unwrap();
        m.write(f, 0, b"0123").unwrap();
        let t = m.fsync_target(f).unwrap();
        m.fsync(f, t, true).unwrap();
        m.write(f, 4, b"4567").unwrap();
        m.write(f, 100, b"far").unwrap();
        m.set_len(f, 6).unwrap();
        m.cut(Tear::Prefix, &mut Rng::new(seed)).unwrap();
        let mut after = reload(&m, &image, &objects);
        let got = content(&mut after, "f").unwrap();
        assert!(possible_after_tear(&got), "seed {seed}: {got:?}");
        seen.insert(got.len());
    }
    // Nothing kept, all kept, and torn writes in between all happen.
    for len in [4, 5, 8, 103, 6] {
        assert!(seen.contains(&len), "{seen:?}");
    }
}

#[test]
fn a_rename_is_atomic_and_durable_once_its_directory_is_synced() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let (_tmp, image, objects) = disk();
        let mut m = Model::load(&image, &objects).unwrap();
        let old = m.create_file(ROOT, OsStr::new("meta.json"), 0o644).unwrap();
        m.write(old, 0, b"old").unwrap();
        m.sync_all().unwrap();
        let tmp = m.create_file(ROOT, OsStr::new("meta.tmp"), 0o644).unwrap();
        m.write(tmp, 0, b"new").unwrap();
        let t = m.fsync_target(tmp).unwrap();
        m.fsync(tmp, t, false).unwrap();
        m.rename(ROOT, OsStr::new("meta.tmp"), ROOT, OsStr::new("meta.json"), false)
            .unwrap();
        assert_eq!(content(&mut m, "meta.json").unwrap(), b"new");
        if seed == 0 {
            let t = m.fsync_target(ROOT).unwrap();
            m.fsync(ROOT, t, false).unwrap();
        }
        m.cut(Tear::Prefix, &mut Rng::new(seed)).unwrap();
        let mut after = reload(&m, &image, &objects);
        let got = content(&mut after, "meta.json").unwrap();
        let tmp_left = after.resolve(Path::new("meta.tmp")).is_ok();
        if seed == 0 {
            assert_eq!((got.as_slice(), tmp_left), (&b"new"[..], false));
        }
        // Either the old file alone (maybe with the new one under its temporary name),
        // or the new one alone: never a mix, never nothing.
        assert!(
            (got == b"old") || (got == b"new" && !tmp_left),
            "seed {seed}: {got:?} {tmp_left}"
        );
        outcomes.insert((got, tmp_left));
    }
    assert!(outcomes.len() >= 3, "{outcomes:?}");
}
