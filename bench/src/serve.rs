//! Running the product for the benchmarks that talk to `mailvault serve` (`imap`, `intake`,
//! `soak`): adding users, starting the server with its listeners on free loopback ports
//! (`127.0.0.1:0`) and reading the bound addresses from its log.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::dovecot::{tail, Server};
use crate::{fail, mailvault, BenchResult};

/// `mailvault user add NAME --address A… --password-stdin`, before or while the server runs.
pub fn add_user(bin: &Path, store: &Path, name: &str, addresses: &[&str], password: &str) -> BenchResult<()> {
    let args: Vec<&str> = addresses.iter().flat_map(|a| ["--address", a]).collect();
    add_user_with(bin, store, name, &args, password)
}

/// `mailvault user add NAME ARGS… --password-stdin` (a role, addresses, domains).
pub fn add_user_with(bin: &Path, store: &Path, name: &str, args: &[&str], password: &str) -> BenchResult<()> {
    let mut add = mailvault(bin, store);
    add.args(["user", "add", name, "--password-stdin"]).args(args);
    add.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = add.spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return fail(format!(
            "mailvault user add {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `serve` arguments that put only `door` (`imap`, `imaps`, `lmtp`, `smtp`, `web`, `admin`)
/// on a free loopback port and switch every other listener off.
pub fn only_listener(door: &str) -> Vec<String> {
    ["imap", "imaps", "lmtp", "smtp", "web", "admin"]
        .iter()
        .flat_map(|d| {
            let addr = if *d == door { "127.0.0.1:0" } else { "none" };
            [format!("--{d}"), addr.to_string()]
        })
        .collect()
}

/// Starts `mailvault --data STORE serve ARGS…` with stderr (its log) going to `log`.
/// `RUST_LOG` is removed so the config's `[server] log` applies.
pub fn start(bin: &Path, store: &Path, args: &[&str], log: &Path) -> BenchResult<Server> {
    let log_file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = mailvault(bin, store)
        .env_remove("RUST_LOG")
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    Ok(Server {
        child,
        what: "mailvault serve",
    })
}

/// Reads the serve log until it has a `listening protocol=PROTOCOL addr=…` line; fails if the
/// server exits first or `timeout` passes.
pub fn wait_for_listener(
    server: &mut Server,
    log: &Path,
    protocol: &str,
    timeout: Duration,
) -> BenchResult<SocketAddr> {
    let until = Instant::now() + timeout;
    let wanted = format!("protocol={protocol}");
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains("listening") && l.split_whitespace().any(|w| w == wanted))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok())
            });
        if let Some(addr) = found {
            return Ok(addr);
        }
        server.check_running(log)?;
        if Instant::now() >= until {
            return fail(format!(
                "mailvault serve logged no `listening {wanted}` within {timeout:?}; log {}:\n{}",
                log.display(),
                tail(log, 20)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
