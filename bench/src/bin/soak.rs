//! Soak (issue #10): legitimate IMAP sessions and LMTP senders against the release
//! `mailvault serve` for `--secs`, while an attacker replays the security findings in a loop.
//! Prints operations, errors and latencies per legitimate client kind, deliveries/s, the
//! server's RSS every 10 s, what the server answered each attack, the legitimate errors during
//! each, and whether the server was alive and answering at the end. Never asserts. See
//! bench/README.md (`## soak`).
//!
//! ```sh
//! cargo build --release -p mailvault -p mailvault-bench
//! target/release/soak [--secs 300] [--imap-sessions 200] [--lmtp-senders 32] [--attacks all]
//! ```

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use mailvault_bench::dovecot::{memory_of, tail, Server, START_TIMEOUT};
use mailvault_bench::imap_client::Imap;
use mailvault_bench::mailgen::MailGen;
use mailvault_bench::serve::{self, add_user, wait_for_listener};
use mailvault_bench::smtp_client::Smtp;
use mailvault_bench::soak::attacks::{self, AttackLog};
use mailvault_bench::soak::legit::{self, CLIENT_TIMEOUT};
use mailvault_bench::soak::{source, Accounts, Client, Recorder, Shared, Target, PHASES};
use mailvault_bench::{
    fail, load_average, machine, mailvault, mailvault_binary, mb, run_timed, source_version, BenchResult,
    Options,
};

const USAGE: &str = "usage: soak [--secs N] [--imap-sessions N] [--lmtp-senders N] [--attacks LIST] \
                     [--users N] [--preload N] [--lmtp-pause-ms N] [--config FILE] [--scratch DIR] [--keep yes]\n\
  --secs N           how long the legitimate load runs (default 300)\n\
  --imap-sessions N  legitimate IMAP sessions, 5 per 127.1.0.x source address (default 200)\n\
  --lmtp-senders N   legitimate LMTP senders, 8 per 127.2.0.x relay address (default 32)\n\
  --attacks LIST     all (default), none, or attack numbers: 1,2,3,4,5,6,7,8,9,11\n\
  --users N          legitimate users the sessions and deliveries spread over (default 20)\n\
  --preload N        messages delivered before the load starts (default 2000)\n\
  --lmtp-pause-ms N  mean pause between one sender's messages (default 100)\n\
  --config FILE      serve with this config instead of the generated one (it must keep the\n\
                     listeners on loopback; the bench reads their addresses from the log)\n\
  --scratch DIR      parent of the store and the server's log (default: the temp dir)\n\
  --keep yes         keep the store, config and log afterwards";

/// How often the server's RSS is sampled and a fresh connection probes it.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the RSS time series.
struct Sample {
    secs: f64,
    rss: u64,
    probe: String,
    phase: usize,
    imap: (u64, u64),
    lmtp: (u64, u64),
    deliveries: u64,
}

fn run() -> BenchResult<()> {
    let opts = Options::parse(
        &[
            "--secs",
            "--imap-sessions",
            "--lmtp-senders",
            "--attacks",
            "--users",
            "--preload",
            "--lmtp-pause-ms",
            "--config",
            "--scratch",
            "--keep",
        ],
        USAGE,
    )?;
    let secs = opts.count("--secs", 300)? as u64;
    let sessions = opts.count("--imap-sessions", 200)?;
    let senders = opts.count("--lmtp-senders", 32)?;
    let users = opts.count("--users", 20)?;
    let preload = opts.count("--preload", 2000)?;
    let pause = Duration::from_millis(opts.count("--lmtp-pause-ms", 100)? as u64);
    let selected = attacks::parse_selection(
        &opts
            .path("--attacks")
            .map_or("all".to_string(), |p| p.display().to_string()),
    )?;
    let keep = matches!(opts.path("--keep").as_deref().and_then(Path::to_str), Some("yes"));
    let scratch_parent = opts.path("--scratch").unwrap_or_else(std::env::temp_dir);

    println!("soak: legitimate load + attacker against mailvault serve (issue #10)");
    println!("machine  {}", machine());
    println!("source   {}", source_version());
    let bin = mailvault_binary()?;
    fs::create_dir_all(&scratch_parent).map_err(|e| format!("{}: {e}", scratch_parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("mailvault-soak-")
        .tempdir_in(&scratch_parent)?;
    let store = scratch.path().join("store");
    let log = scratch.path().join("serve.log");
    run_timed(mailvault(&bin, &store).arg("init"), "mailvault init")?;
    let accounts = Accounts::new(users);
    for a in accounts.all() {
        add_user(&bin, &store, &a.name, &[&a.address], &a.password)?;
    }
    // The relay account of attack 9 (`[intake] relay_users`); its address sees no mail.
    add_user(
        &bin,
        &store,
        "relay",
        &["relay@relay.invalid"],
        "soak-relay-password",
    )?;
    let config = match opts.path("--config") {
        Some(given) => given,
        None => {
            let path = scratch.path().join("mailvault.toml");
            fs::write(&path, generated_config())?;
            path
        }
    };
    println!(
        "load     {secs} s: {sessions} IMAP sessions over {users} users ({} per 127.1.0.x address), \
         {senders} LMTP senders ({} per 127.2.0.x relay address, mean pause {} ms), {preload} messages preloaded",
        source::SESSIONS_PER_ADDRESS,
        source::SENDERS_PER_RELAY,
        pause.as_millis()
    );
    let names: Vec<String> = selected.iter().map(usize::to_string).collect();
    println!(
        "attacks  {}",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    );
    println!("config   {}", config.display());
    for line in fs::read_to_string(&config).unwrap_or_default().lines() {
        println!("         | {line}");
    }

    let config_arg = config.display().to_string();
    let mut server = serve::start(&bin, &store, &["--config", &config_arg], &log)?;
    let imap = wait_for_listener(&mut server, &log, "imap", START_TIMEOUT)?;
    let lmtp = wait_for_listener(&mut server, &log, "lmtp", START_TIMEOUT)?;
    let smtp = wait_for_listener(&mut server, &log, "smtp", START_TIMEOUT)?;
    let target = Target {
        imap,
        lmtp,
        smtp,
        pid: server.pid(),
    };
    println!(
        "server   pid {}, IMAP {imap}, LMTP {lmtp}, SMTP {smtp}",
        target.pid
    );
    check_login_allowed(&target, &accounts)?;

    let t = Instant::now();
    let all: Vec<_> = accounts.all().cloned().collect();
    let preloaded = legit::preload(lmtp, &all, preload)?;
    println!(
        "preload  {preloaded} messages in {:.1} s; RSS {:.1} MB",
        t.elapsed().as_secs_f64(),
        mb(memory_of(target.pid).0)
    );
    println!();

    let words: Vec<String> = {
        let gen = MailGen::new(1, 100_000);
        (20..2000)
            .step_by(7)
            .map(|r| gen.english_word(r).to_string())
            .collect()
    };
    let shared = Shared::new(target, accounts, secs);
    let warmup = Duration::from_secs((secs / 10).clamp(1, 10));
    let (recorder, attack_log, samples, died, load_secs) = thread::scope(|s| {
        let imap_threads: Vec<_> = (0..sessions)
            .map(|id| {
                let (shared, words) = (&shared, &words);
                thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(s, move || legit::imap_session(shared, id, words))
            })
            .collect();
        let lmtp_threads: Vec<_> = (0..senders)
            .map(|id| {
                let shared = &shared;
                thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(s, move || legit::lmtp_sender(shared, id, pause))
            })
            .collect();
        let attacker = s.spawn(|| attacks::run(&shared, &selected, warmup));
        let (samples, died) = monitor(&shared, &mut server, &log);
        shared.stop();
        let load_secs = shared.elapsed();
        let mut recorder = Recorder::default();
        for handle in imap_threads.into_iter().chain(lmtp_threads).flatten() {
            if let Ok(r) = handle.join() {
                recorder.merge(r);
            }
        }
        let attack_log = attacker.join().unwrap_or_default();
        (recorder, attack_log, samples, died, load_secs)
    });
    report(&shared, recorder, &attack_log, &selected, &samples, load_secs);

    println!();
    println!("END");
    match &died {
        Some(how) => println!("  server DIED during the run: {how}"),
        None => println!("  server process still running at the end"),
    }
    if died.is_none() {
        let (imap_answer, lmtp_answer) = end_check(&shared);
        println!(
            "  IMAP login+SELECT+NOOP from {}: {imap_answer}",
            source::END_CHECK
        );
        println!("  LMTP greeting+LHLO from {}: {lmtp_answer}", source::END_CHECK);
        println!("  RSS at the end {:.1} MB", mb(memory_of(target.pid).0));
        let t = Instant::now();
        let stopped = server
            .terminate()
            .and_then(|_| server.wait(Duration::from_secs(60)));
        match stopped {
            Ok(status) => println!(
                "  SIGTERM: exited {status} after {:.1} s",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => println!("  SIGTERM: {e} (killed)"),
        }
    }
    print_log_summary(&log);
    println!("load average {} at end", load_average());
    drop(server);
    if keep {
        println!("kept     {}", scratch.keep().display());
    }
    Ok(())
}

/// The config the bench serves with: every listener on a free loopback port, the IMAP limits
/// written out (defaults; the clients come from many 127.0.0.x addresses, so the per-address
/// limit stays realistic), the relays' network (127.2.0.0/16) the only one allowed to send
/// without AUTH (the attacker's addresses are outside it, as the Internet is), the relay
/// account `relay` for AUTH (a local user, added before the
/// server starts), plaintext LOGIN on the loopback IMAP listener, no implicit-TLS IMAP.
fn generated_config() -> String {
    "# Written by bench soak.\n\
     [server]\n\
     log = \"info\"\n\
     shutdown_grace_secs = 10\n\
     \n\
     [intake]\n\
     lmtp = \"127.0.0.1:0\"\n\
     smtp = \"127.0.0.1:0\"\n\
     max_sessions = 256\n\
     allow = [\"127.2.0.0/16\"]\n\
     relay_users = [\"relay\"]\n\
     \n\
     # Plain IMAP on loopback: LOGIN without STARTTLS (the bench has no TLS client).\n\
     [imap]\n\
     plain = \"127.0.0.1:0\"\n\
     tls = \"none\"\n\
     allow_plaintext_login = true\n\
     \n\
     [imap.limits]\n\
     max_connections_per_ip = 20\n\
     max_connections_per_user = 20\n\
     max_connections = 1000\n\
     login_timeout_secs = 60\n"
        .to_string()
}

/// Fails early, with the reason, if the IMAP listener refuses plaintext LOGIN.
fn check_login_allowed(target: &Target, accounts: &Accounts) -> BenchResult<()> {
    let mut c = Imap::connect(target.imap, Some(source::END_CHECK), CLIENT_TIMEOUT)?;
    let caps = c.exchange(b"CAPABILITY", true)?;
    if caps.text.contains("LOGINDISABLED") {
        return fail(format!(
            "the IMAP listener announces LOGINDISABLED ({}): the bench logs in without TLS; \
             allow plaintext LOGIN on the loopback listener in the config (--config FILE)",
            caps.text.trim()
        ));
    }
    let account = &accounts.legit[0];
    c.login(&account.name, &account.password)?;
    c.logout();
    Ok(())
}

/// Until the load's deadline: every 200 ms, whether the server still runs; every 10 s its
/// RSS and a fresh connection's greeting. Returns the samples and, if it died, how.
fn monitor(shared: &Shared, server: &mut Server, log: &Path) -> (Vec<Sample>, Option<String>) {
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    let mut last = (0u64, 0u64, 0u64, 0u64, 0u64);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let how = format!(
                "exited {status} at {:.1} s (attack running: {}; the last attack started: {})",
                shared.elapsed(),
                shared.phase.load(std::sync::atomic::Ordering::Relaxed),
                shared.last_attack.load(std::sync::atomic::Ordering::Relaxed)
            );
            eprintln!("soak: the server {how}; log:\n{}", tail(log, 20));
            return (samples, Some(how));
        }
        let ending = !shared.running();
        if ending || Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let t = Instant::now();
            let probe = match Imap::connect(shared.target.imap, Some(source::PROBE), Duration::from_secs(5)) {
                Ok(mut c) => {
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    c.logout();
                    format!("{ms:.0} ms")
                }
                Err(e) => format!("FAILED: {:.60}", e.to_string()),
            };
            let imap = shared.totals(Client::Imap);
            let lmtp = shared.totals(Client::Lmtp);
            let deliveries = shared.deliveries.load(std::sync::atomic::Ordering::Relaxed);
            let sample = Sample {
                secs: shared.elapsed(),
                rss: memory_of(shared.target.pid).0,
                probe,
                phase: shared.phase.load(std::sync::atomic::Ordering::Relaxed),
                imap: (imap.0 - last.0, imap.1 - last.1),
                lmtp: (lmtp.0 - last.2, lmtp.1 - last.3),
                deliveries: deliveries - last.4,
            };
            last = (imap.0, imap.1, lmtp.0, lmtp.1, deliveries);
            eprintln!(
                "soak: {:>5.0} s  RSS {:>7.1} MB  probe {:<10} attack {:<2}  IMAP ops {} errors {}  LMTP ops {} errors {}",
                sample.secs,
                mb(sample.rss),
                sample.probe,
                sample.phase,
                sample.imap.0,
                sample.imap.1,
                sample.lmtp.0,
                sample.lmtp.1
            );
            samples.push(sample);
        }
        if ending {
            return (samples, None);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// After the load: a fresh IMAP login and a fresh LMTP session.
fn end_check(shared: &Shared) -> (String, String) {
    let timeout = Duration::from_secs(10);
    let t = Instant::now();
    let account = &shared.accounts.legit[0];
    let imap = Imap::connect(shared.target.imap, Some(source::END_CHECK), timeout).and_then(|mut c| {
        c.login(&account.name, &account.password)?;
        c.select("INBOX")?;
        c.command("NOOP", false)?;
        c.logout();
        Ok(c.exists)
    });
    let imap = match imap {
        Ok(exists) => format!(
            "answered in {:.0} ms (INBOX of {} holds {exists})",
            t.elapsed().as_secs_f64() * 1e3,
            account.name
        ),
        Err(e) => format!("NOT answering: {e}"),
    };
    let t = Instant::now();
    let lmtp = Smtp::connect(shared.target.lmtp, Some(source::END_CHECK), timeout).and_then(|mut c| {
        c.expect(220, "the greeting")?;
        c.send(b"LHLO end.example\r\n")?;
        c.expect(250, "LHLO")?;
        let _ = c.send(b"QUIT\r\n");
        Ok(())
    });
    let lmtp = match lmtp {
        Ok(()) => format!("answered in {:.0} ms", t.elapsed().as_secs_f64() * 1e3),
        Err(e) => format!("NOT answering: {e}"),
    };
    (imap, lmtp)
}

/// Counts the server log's warnings, errors and panics, lists up to 12 distinct warning and
/// error messages (without timestamps), and shows its last lines.
fn print_log_summary(log: &Path) {
    let text = read_log(log);
    let level = |l: &str, level: &str| l.split_whitespace().nth(1) == Some(level);
    let warnings = text.lines().filter(|l| level(l, "WARN")).count();
    let errors = text.lines().filter(|l| level(l, "ERROR")).count();
    let panics = text.lines().filter(|l| l.contains("panicked")).count();
    println!(
        "  server log: {} lines, {warnings} WARN, {errors} ERROR, {panics} panics",
        text.lines().count()
    );
    let mut distinct: Vec<String> = Vec::new();
    for l in text.lines().filter(|l| level(l, "WARN") || level(l, "ERROR")) {
        // Without the timestamp, and with peers' ports and numbers as `#`, to group repeats.
        let message: String = l
            .split_once(' ')
            .map_or(l, |(_, rest)| rest)
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(160)
            .collect();
        if !distinct.contains(&message) && distinct.len() < 12 {
            distinct.push(message);
        }
    }
    for m in &distinct {
        println!("    {m}");
    }
    println!("  its last lines:\n{}", indent(&tail(log, 8)));
}

fn read_log(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l:.200}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn report(
    shared: &Shared,
    mut recorder: Recorder,
    attack_log: &AttackLog,
    selected: &[usize],
    samples: &[Sample],
    elapsed: f64,
) {
    recorder.finish();
    println!();
    println!("LEGITIMATE CLIENTS ({elapsed:.0} s; target: 0 errors)");
    println!(
        "{:<5} {:<32} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "kind", "operation", "ok", "errors", "p50 ms", "p99 ms", "max ms"
    );
    for ((client, op), stats) in &recorder.ops {
        println!(
            "{:<5} {:<32} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            client.name(),
            op,
            stats.latencies.len(),
            stats.errors,
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.99),
            stats.quantile_ms(1.0)
        );
    }
    for client in [Client::Imap, Client::Lmtp] {
        let (ops, errors) = shared.totals(client);
        println!(
            "{} total: {} operations, {errors} errors",
            client.name(),
            ops + errors
        );
    }
    let deliveries = shared.deliveries.load(std::sync::atomic::Ordering::Relaxed);
    let recipients = shared
        .delivered_recipients
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "deliveries: {deliveries} messages ({recipients} recipient replies) in {elapsed:.0} s = {:.1} messages/s",
        deliveries as f64 / elapsed.max(f64::MIN_POSITIVE)
    );
    let with_errors: Vec<_> = recorder.ops.iter().filter(|(_, s)| s.errors > 0).collect();
    if !with_errors.is_empty() {
        println!("errors (up to 6 distinct messages per operation):");
        for ((client, op), stats) in with_errors {
            for (sample, n) in &stats.samples {
                println!("  {} {op}: {n} x {sample}", client.name());
            }
        }
    }

    println!();
    println!(
        "SERVER RSS (VmRSS) AND A FRESH CONNECTION'S GREETING, EVERY {} s",
        SAMPLE_EVERY.as_secs()
    );
    println!(
        "{:>6} {:>10} {:<16} {:>7} {:>9} {:>7} {:>9} {:>7} {:>11}",
        "t s", "RSS MB", "probe", "attack", "IMAP ops", "errors", "LMTP ops", "errors", "deliveries"
    );
    for s in samples {
        println!(
            "{:>6.0} {:>10.1} {:<16} {:>7} {:>9} {:>7} {:>9} {:>7} {:>11}",
            s.secs,
            mb(s.rss),
            s.probe,
            if s.phase == 0 {
                "-".to_string()
            } else {
                s.phase.to_string()
            },
            s.imap.0,
            s.imap.1,
            s.lmtp.0,
            s.lmtp.1,
            s.deliveries
        );
    }
    println!(
        "(ops and errors per row: since the row before; attack: the one running at the sample; \
         the last row is the end of the load)"
    );

    println!();
    println!("ATTACKS (answers with digits as # are grouped; [n x, longest s])");
    let (idle_imap, idle_lmtp) = (
        shared.phase_figures(Client::Imap, 0),
        shared.phase_figures(Client::Lmtp, 0),
    );
    println!(
        "between attacks: legitimate IMAP {} ok / {} errors, LMTP {} ok / {} errors",
        idle_imap.0, idle_imap.1, idle_lmtp.0, idle_lmtp.1
    );
    for &attack in selected {
        let rounds = attack_log.rounds.get(&attack).copied().unwrap_or(0);
        let imap = shared.phase_figures(Client::Imap, attack.min(PHASES - 1));
        let lmtp = shared.phase_figures(Client::Lmtp, attack.min(PHASES - 1));
        println!(
            "attack {attack}: {}\n  {rounds} round(s); legitimate errors during it: IMAP {} (of {}), LMTP {} (of {})",
            attacks::describe(attack),
            imap.1,
            imap.0 + imap.1,
            lmtp.1,
            lmtp.0 + lmtp.1
        );
        if rounds == 0 {
            println!("  not reached: the run ended (or the server died) first; run longer");
        }
        for (what, answers) in attack_log.answers.get(&attack).into_iter().flatten() {
            for (full, n, longest) in answers.values() {
                println!("  {what}: {full} [{n} x, {longest:.2} s]");
            }
        }
    }
}
