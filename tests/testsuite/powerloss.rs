//! Power loss: `mailvault serve` runs on lossyfs (`lossyfs/`), a FUSE file system that keeps
//! only what was fsynced, while eight LMTP senders deliver. The power is cut at a random
//! moment (the disk drops or tears what was not synced, the server is killed with SIGKILL);
//! the server starts again on what the disk kept, and every message it acknowledged with 250
//! before the cut must be in the log with its exact bytes, `verify` must pass, and what got
//! no answer is sent again and stored once. In one cycle of four, fsyncs of the active segment
//! also fail under the load, losing what they covered (the log goes back to its last durable
//! record while senders wait). With the fsync of the group commit deleted, or the
//! acknowledgement moved before it, this fails (docs/TESTING.md has the runs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::intake::lmtp_deliver;
use crate::lossyfs::{Disk, Options, Rng, Stats, StoreDisk, Tear};
use crate::util::{incompressible_message, Vault};
use crate::web_api::{add_users, bearer, token, Web};

const SENDERS: u32 = 8;

/// Which message: its bytes are made again from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    cycle: u32,
    sender: u32,
    n: u32,
}

fn message(k: Key) -> Vec<u8> {
    let subject = format!("power {}/{}/{}", k.cycle, k.sender, k.n);
    if k.n % 9 == 4 {
        // Longer than one write request of the disk (128 KiB): a cut can tear it.
        incompressible_message(&subject, 150_000 + k.sender as usize * 997)
    } else {
        let body = "a line of the body\r\n".repeat((k.n as usize * 37 + k.sender as usize) % 300);
        format!(
            "From: s{}@example.org\r\nTo: archive@vault.example\r\nSubject: {subject}\r\n\r\n{body}",
            k.sender
        )
        .into_bytes()
    }
}

/// A 250 the server gave: the message and its receipt.
#[derive(Clone, Debug)]
struct Ack {
    key: Key,
    seq: u64,
    blake3: String,
}

/// Sends `key`'s message; the acknowledgement, checked against what was sent.
fn send(addr: std::net::SocketAddr, key: Key) -> Option<Ack> {
    deliver(std::net::TcpStream::connect(addr).ok()?, key)
}

fn deliver(connection: std::net::TcpStream, key: Key) -> Option<Ack> {
    let body = message(key);
    let (seq, hash) = lmtp_deliver(connection, &body)?;
    assert_eq!(
        hash,
        blake3::hash(&body).to_hex().as_str(),
        "{key:?}: the receipt names other bytes"
    );
    Some(Ack {
        key,
        seq,
        blake3: hash,
    })
}

/// What the runs add up to.
#[derive(Default)]
struct Figures {
    cuts: u32,
    /// Cuts that kept a random prefix of the unsynced operations (the rest dropped them all,
    /// or all unsynced file data).
    torn_cuts: u32,
    acked: usize,
    resent: usize,
    /// fsyncs of the active segment set to fail (and lose what they covered) under load;
    /// those that happened before the cut are `disk.lost_fsyncs`.
    failed_fsyncs: u64,
    disk: Stats,
    /// How long the clean stop after the last cut took.
    last_stop: Duration,
}

impl Figures {
    fn add(&mut self, s: Stats) {
        let d = &mut self.disk;
        d.fsyncs += s.fsyncs;
        d.dropped_ops += s.dropped_ops;
        d.kept_ops += s.kept_ops;
        d.torn_writes += s.torn_writes;
        d.zeroed_writes += s.zeroed_writes;
        d.dropped_bytes += s.dropped_bytes;
        d.lost_fsyncs += s.lost_fsyncs;
    }
}

/// A test's directory, kept when the test fails: its disk image is what the last cut left.
struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    fn path(&self) -> &std::path::Path {
        self.0.as_ref().map(|t| t.path()).unwrap()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(t) = self.0.take() {
                eprintln!(
                    "power cuts: the failed run's disk is kept in {}",
                    t.keep().display()
                );
            }
        }
    }
}

/// The records from `from` on (`log --json --from`).
fn log_from(vault: &Vault, from: u64) -> Vec<serde_json::Value> {
    String::from_utf8(vault.ok(&["log", "--json", "--from", &from.to_string()]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// After a restart: every message of `acked` is in the log under its seq with its hash, a
/// few of them come back byte for byte from `show`, and (with `verify`) `verify` passes.
/// Returns the seq of the last record.
fn check(vault: &Vault, acked: &[Ack], verify: bool, rng: &mut Rng, after: &str) -> u64 {
    let from = acked.iter().map(|a| a.seq).min().unwrap_or(1);
    let records = log_from(vault, from);
    let by_seq: HashMap<u64, &serde_json::Value> =
        records.iter().map(|r| (r["seq"].as_u64().unwrap(), r)).collect();
    let lost: Vec<&Ack> = acked
        .iter()
        .filter(|a| {
            by_seq
                .get(&a.seq)
                .is_none_or(|r| r["blake3"].as_str() != Some(a.blake3.as_str()))
        })
        .collect();
    if let Some(first) = lost.first() {
        let around: Vec<String> = records
            .iter()
            .filter(|r| {
                r["seq"]
                    .as_u64()
                    .is_some_and(|s| s + 3 >= first.seq && s <= first.seq + 3)
            })
            .map(|r| format!("{} {} {}", r["seq"], r["kind"], r["blake3"]))
            .collect();
        let elsewhere = records
            .iter()
            .find(|r| r["blake3"].as_str() == Some(first.blake3.as_str()))
            .map(|r| r["seq"].clone());
        panic!(
            "{after}: {} of {} acknowledged messages lost or changed, first {first:?}; the log \
             around it: {around:?}; its bytes elsewhere in the log: {elsewhere:?}; the last \
             record: {:?}",
            lost.len(),
            acked.len(),
            records.last().map(|r| r["seq"].clone())
        );
    }
    if verify {
        let (code, out) = vault.verify(&[]);
        assert_eq!(code, 0, "{after}: verify: {out}");
    }
    for _ in 0..2.min(acked.len()) {
        let a = &acked[rng.below(acked.len() as u64) as usize];
        let shown = vault.ok(&["show", &a.seq.to_string()]);
        assert!(shown == message(a.key), "{after}: seq {} differs", a.seq);
    }
    records
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .max()
        .unwrap_or(from - 1)
}

/// `cuts` power cuts. After each, the messages acknowledged since the one before are checked;
/// after every `full_every`-th and the last, every message acknowledged so far, and `verify`.
fn power_cuts(cuts: u32, full_every: u32) {
    let seed = Rng::seed();
    eprintln!("power cuts: LOSSYFS_SEED={seed}");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let kept = KeptOnFailure(Some(
        tempfile::Builder::new()
            .prefix("mailvault-powerloss")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap(),
    ));
    let tmp = kept.path();
    let disk = Disk::new(&tmp.join("disk"));
    let mnt = tmp.join("mnt");
    let config = tmp.join("mailvault.toml");
    // Small segments: roll-overs (seal, new segment, directory fsync) happen under the cuts.
    std::fs::write(&config, "[store]\nsegment_mib = 1\n").unwrap();
    let config = config.to_str().unwrap();
    // The store's identity and key are written before the cuts, straight onto the disk.
    Vault::at(disk.image().join("data")).ok(&["init"]);

    let mut figures = Figures::default();
    let mut acked: Vec<Ack> = Vec::new();
    let mut unanswered: Vec<Key> = Vec::new();
    // Acknowledgements before this index were checked after an earlier cut.
    let mut checked = 0;
    // The first seq the load before the last cut (or a resend after it) can have written.
    let mut load_from = 1;
    let mut last_tear = None;
    for cycle in 0..=cuts {
        let mounted = disk.mount(&mnt, Options::default());
        let vault = Vault::at(mnt.join("data"));
        let server = vault.serve(&["--config", config]);
        let after = format!("after cut {cycle} of {cuts} ({last_tear:?}; LOSSYFS_SEED={seed})");
        let full = cycle % full_every == 0 || cycle == cuts;
        let since = if full { 0 } else { checked };
        let last = check(&vault, &acked[since..], full, &mut rng, &after);
        checked = acked.len();
        // The relay sends again what got no answer: stored once, whether or not it was in
        // the log already (if at all, then since the load before the cut began).
        let resent: Vec<Ack> = std::mem::take(&mut unanswered)
            .into_iter()
            .map(|key| send(server.lmtp, key).unwrap_or_else(|| panic!("{after}: resend of {key:?}")))
            .collect();
        if !resent.is_empty() {
            let records = log_from(&vault, load_from);
            for ack in &resent {
                let copies = records
                    .iter()
                    .filter(|r| r["kind"] == "message" && r["blake3"] == ack.blake3.as_str())
                    .count();
                assert_eq!(copies, 1, "{after}: {:?} stored {copies} times", ack.key);
            }
        }
        figures.resent += resent.len();
        acked.extend(resent);
        load_from = last + 1;
        if cycle == cuts {
            // The search index is derived and catches up in the background; after many
            // short lives it lags far behind, and a clean stop finishes its current batch.
            let stopping = Instant::now();
            assert_eq!(
                server.stop_within(Duration::from_secs(900)),
                Some(0),
                "{after}: a clean stop"
            );
            figures.last_stop = stopping.elapsed();
            mounted.unmount();
            break;
        }

        // Senders connect only while holding this for reading, and stop once it says so: the
        // cut takes it for writing, so no sender connects once the server is killed (its
        // port could by then belong to another test's server).
        let stop = Arc::new(RwLock::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let this_cycle: Arc<Mutex<(Vec<Ack>, Vec<Key>)>> = Arc::default();
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (stop, count, out) = (stop.clone(), count.clone(), this_cycle.clone());
                let addr = server.lmtp;
                std::thread::spawn(move || {
                    for n in 0.. {
                        let connection = {
                            let stopped = stop.read().unwrap();
                            if *stopped {
                                return;
                            }
                            std::net::TcpStream::connect(addr)
                        };
                        let key = Key { cycle, sender, n };
                        match connection.ok().and_then(|c| deliver(c, key)) {
                            Some(ack) => {
                                out.lock().unwrap().0.push(ack);
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                out.lock().unwrap().1.push(key);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        // In one cycle of four, fsyncs of the active segment fail under the load (the log
        // goes back to its last durable record while the senders wait on it).
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            let log = mnt.join("data/log");
            let segment = std::fs::read_dir(&log)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().ends_with(".seg"))
                .max();
            if let Some(segment) = segment {
                let failing = 1 + rng.below(3) as u32;
                mounted.lose_fsyncs(&Path::new("data/log").join(segment), failing);
                figures.failed_fsyncs += u64::from(failing);
            }
        }
        // Cut after a random number of acknowledgements (or once every sender got a 451),
        // a little later still.
        let target = 1 + rng.below(40) as usize;
        let hang = Instant::now() + Duration::from_secs(120);
        while count.load(Ordering::Relaxed) < target && !senders.iter().all(|s| s.is_finished()) {
            assert!(
                Instant::now() < hang,
                "{after}: no acknowledgements: {}",
                server.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        let tear = match rng.below(8) {
            0 | 1 => Tear::DropAll,
            2 => Tear::DataLost,
            _ => {
                figures.torn_cuts += 1;
                Tear::Prefix
            }
        };
        mounted.cut(tear, &mut rng);
        last_tear = Some(tear);
        *stop.write().unwrap() = true;
        server.kill9();
        for s in senders {
            s.join().unwrap();
        }
        let (acks, missed) = std::mem::take(&mut *this_cycle.lock().unwrap());
        figures.acked += acks.len();
        acked.extend(acks);
        unanswered.extend(missed);
        figures.add(mounted.unmount());
        figures.cuts += 1;
    }
    let d = &figures.disk;
    eprintln!(
        "power cuts: {} cuts ({} torn, {} dropping all unsynced data) in {:.0?}; {} messages \
         acknowledged under load + {} resent after a 451 or a cut, 0 lost; {} of {} fsyncs of \
         the active segment set to fail did so before the cut; disk: {} fsyncs, {} unsynced \
         operations dropped ({} MB) and {} kept by tears, {} writes torn, {} as zeros; the \
         final clean stop took {:.0?}",
        figures.cuts,
        figures.torn_cuts,
        figures.cuts - figures.torn_cuts,
        started.elapsed(),
        figures.acked,
        figures.resent,
        d.lost_fsyncs,
        figures.failed_fsyncs,
        d.fsyncs,
        d.dropped_ops,
        d.dropped_bytes >> 20,
        d.kept_ops,
        d.torn_writes,
        d.zeroed_writes,
        figures.last_stop,
    );
}

/// The self-signed TLS pair the first start makes must survive a power cut whole: a pair
/// whose names reached the disk without their bytes kept the server from starting again
/// ("not a PEM private key").
#[test]
fn a_power_cut_after_the_first_start_leaves_a_server_that_starts() {
    let on = StoreDisk::new("mailvault-powerloss");
    let vault = &on.vault;
    let mounted = on.mount();
    let server = vault.serve(&[]);
    let first = Key {
        cycle: 0,
        sender: 0,
        n: 0,
    };
    let acked = vec![send(server.lmtp, first).expect("delivered")];
    mounted.cut(Tear::DataLost, &mut Rng::new(1));
    server.kill9();
    mounted.unmount();

    let mounted = on.mount();
    let server = vault.serve(&[]);
    check(vault, &acked, true, &mut Rng::new(1), "after the cut");
    assert!(send(server.lmtp, Key { n: 1, ..first }).is_some());
    assert_eq!(server.stop(), Some(0));
    mounted.unmount();
}

/// A full segment whose seal (its fsync) fails may hold records that never reach the disk:
/// nothing may be acknowledged after them. Before the fix, the next delivery went to a new
/// segment and got its 250 (and, under load, a waiting appender was acknowledged with no
/// fsync at all), so a power cut then lost acknowledged mail or left a gap the store refused.
#[test]
fn a_failed_seal_stops_acknowledgements() {
    let on = StoreDisk::new("mailvault-powerloss");
    let (vault, config) = (&on.vault, on.small_segments.as_str());
    let mounted = on.mount();
    let server = vault.serve(&["--config", config]);
    // Two large messages fill the first segment past 1 MiB; the next delivery seals it.
    let large = |n| incompressible_message(&format!("large {n}"), 600_000);
    let acked: Vec<Ack> = (0..2)
        .map(|n| {
            let (seq, blake3) = crate::intake::lmtp_send(server.lmtp, &large(n)).expect("250");
            Ack {
                key: Key {
                    cycle: 0,
                    sender: 0,
                    n: 0,
                },
                seq,
                blake3,
            }
        })
        .collect();
    mounted.fail_full_fsyncs(Path::new("data/log/00000000000000000001.seg"));
    let small = b"Subject: after the seal\r\n\r\nx\r\n";
    assert!(
        crate::intake::lmtp_send(server.lmtp, small).is_none(),
        "the seal failed: 451"
    );
    assert!(
        crate::intake::lmtp_send(server.lmtp, small).is_none(),
        "nothing is acknowledged after records that may not be on disk"
    );
    mounted.cut(Tear::DropAll, &mut Rng::new(1));
    server.kill9();
    mounted.unmount();

    let mounted = on.mount();
    let server = vault.serve(&["--config", config]);
    let records = log_from(vault, 1);
    for a in &acked {
        assert!(
            records
                .iter()
                .any(|r| r["seq"] == a.seq && r["blake3"] == a.blake3.as_str()),
            "seq {} kept",
            a.seq
        );
    }
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(crate::intake::lmtp_send(server.lmtp, small).is_some());
    assert_eq!(server.stop(), Some(0));
    mounted.unmount();
}

/// A failed fsync of the active segment: the kernel may have dropped what it could not
/// write and will not say so again. The messages it covered get 451 and intake goes on
/// without a restart, from the last durable record (the log's end after the failure is cut
/// into quarantine, and the trail says so); then a power cut loses nothing acknowledged, and
/// `verify` passes. Before, every later delivery got 451 until the server was restarted, and
/// merely forgetting the failure would acknowledge records the disk never got.
#[test]
fn after_a_failed_fsync_intake_goes_on_without_a_restart() {
    let on = StoreDisk::new("mailvault-powerloss");
    let vault = &on.vault;
    let mounted = on.mount();
    // Users and a token before the server starts: with it running, their audit records
    // would go through the spool and could take the failed fsync meant for the search.
    add_users(vault);
    let auth = bearer(&token(vault, "root"));
    let server = vault.serve(&[]);
    let mut n = 0;
    let mut next_message = || {
        n += 1;
        Key {
            cycle: 0,
            sender: 0,
            n,
        }
    };
    let mut acked = Vec::new();
    let mut deliver = |key: Key| {
        let ack = send(server.lmtp, key)?;
        let seq = ack.seq;
        acked.push(ack);
        Some(seq)
    };
    for _ in 0..3 {
        deliver(next_message()).expect("250");
    }
    let segment = Path::new("data/log/00000000000000000001.seg");

    // A web search is an access: its answer leaves only once its audit record is durable
    // (`Store::audited`), so a search whose record's fsync fails gets no answer.
    let web = Web::http(server.web.expect("the web listener"));
    let search = || web.get("/api/v1/search?q=power", &[("authorization", &auth)]);
    let found = search();
    assert_eq!(found.status, 200, "{}", String::from_utf8_lossy(&found.body));
    assert!(found.json()["total"].as_u64().unwrap() > 0);
    mounted.lose_fsyncs(segment, 1);
    let refused = search();
    assert_eq!(
        refused.status,
        503,
        "the search's record was not made durable: {}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(!String::from_utf8_lossy(&refused.body).contains("hits"));
    // The next one is answered, and makes the rewind's own record durable.
    assert_eq!(search().status, 200);
    // One failed fsync; then three in a row, so that the rewind's own fsyncs fail too and a
    // later one (the next delivery, or the server's timer) must try again.
    for failing in [1, 3] {
        mounted.lose_fsyncs(segment, failing);
        assert_eq!(
            deliver(next_message()),
            None,
            "the fsync covering this message failed: 451"
        );
        let resumed = (0..200).find_map(|_| {
            deliver(next_message()).or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                None
            })
        });
        assert!(
            resumed.is_some(),
            "intake goes on after {failing} failed fsync(s), without a restart"
        );
        for _ in 0..3 {
            deliver(next_message()).expect("250 after the rewind");
        }
    }
    let status: serde_json::Value = serde_json::from_slice(&vault.ok(&["status", "--json"])).unwrap();
    assert!(
        !status["quarantine"].as_array().unwrap().is_empty(),
        "what the failed fsyncs covered is kept: {status}"
    );
    mounted.cut(Tear::DropAll, &mut Rng::new(1));
    server.kill9();
    mounted.unmount();

    let mounted = on.mount();
    let server = vault.serve(&[]);
    check(
        vault,
        &acked,
        true,
        &mut Rng::new(1),
        "after failed fsyncs and a cut",
    );
    let rewinds = log_from(vault, 1)
        .into_iter()
        .filter(|r| r["audit"]["action"] == "recovery-rewind")
        .count();
    assert_eq!(rewinds, 3, "each rewind is in the trail");
    assert!(send(
        server.lmtp,
        Key {
            cycle: 1,
            sender: 0,
            n: 0
        }
    )
    .is_some());
    assert_eq!(server.stop(), Some(0));
    mounted.unmount();
}

#[test]
fn power_cuts_under_load_lose_no_acknowledged_message() {
    power_cuts(50, 1);
}

/// Everything is checked after every tenth cut (and the last): checking the whole log after
/// each would make the run quadratic in its length.
#[test]
#[ignore = "1,000 power cuts, about half an hour: run by hand, figures in docs/TESTING.md"]
fn a_thousand_power_cuts_lose_no_acknowledged_message() {
    power_cuts(1000, 10);
}
