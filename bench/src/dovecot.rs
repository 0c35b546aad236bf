//! A private Dovecot for the benchmarks that compare with it (`intake`, `imap`): finding the
//! Debian install, writing a configuration into a temp directory (maildir under it, no system
//! files touched), starting `dovecot -F` and stopping it, plus the process helpers both use
//! (a server process killed on drop, a log's tail, a process tree's memory).

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{fail, BenchResult};

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process a benchmark started; stopped if still running when dropped.
pub struct Server {
    pub child: Child,
    pub what: &'static str,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self, log: &Path) -> BenchResult<()> {
        if let Some(status) = self.child.try_wait()? {
            return fail(format!(
                "{} exited ({status}) before the load; its log {}:\n{}",
                self.what,
                log.display(),
                tail(log, 20)
            ));
        }
        Ok(())
    }

    /// Waits for exit up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> BenchResult<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= until {
                return fail(format!("{} did not stop within {timeout:?}", self.what));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (through kill(1): the benchmarks link no libc bindings).
    pub fn terminate(&self) -> BenchResult<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map_err(|e| format!("running kill: {e}"))?;
        if !status.success() {
            return fail(format!("kill -TERM {} failed ({status})", self.pid()));
        }
        Ok(())
    }
}

impl Drop for Server {
    /// On an early return: SIGTERM (Dovecot's master then stops its children), SIGKILL if
    /// that does not end it within 10 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let stopped = self.terminate().is_ok() && self.wait(Duration::from_secs(10)).is_ok();
            if !stopped {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The last `lines` lines of a text file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether this process runs as root (from /proc/self/status).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// uid and gid of a user in /etc/passwd.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) {
            Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        } else {
            None
        }
    })
}

/// A free loopback port (bound and released; Dovecot takes it a moment later).
pub fn free_port() -> BenchResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(listener.local_addr()?.port())
}

/// The user Dovecot delivers as (a system user; Dovecot refuses uid 0).
pub const DOVECOT_MAIL_USER: &str = "mail";

/// The installed Dovecot (Debian `dovecot-core` + `dovecot-lmtpd`), what else of it is
/// installed, and the mail user it delivers as.
pub struct DovecotSetup {
    pub binary: PathBuf,
    pub doveadm: PathBuf,
    pub version: String,
    pub uid: u32,
    pub gid: u32,
    /// `dovecot-imapd` is installed (the IMAP server).
    pub imap: bool,
    /// `dovecot-fts-xapian` is installed (the Xapian full-text search plugin).
    pub fts_xapian: bool,
}

const LIBEXEC: [&str; 2] = ["/usr/lib/dovecot", "/usr/libexec/dovecot"];

impl DovecotSetup {
    /// Finds the install; the error says what is missing and how to install it.
    pub fn find() -> Result<DovecotSetup, String> {
        let install = "install it with `apt-get install dovecot-core dovecot-lmtpd`";
        let find = |name: &str| {
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        };
        let libexec = |name: &str| LIBEXEC.iter().any(|d| Path::new(d).join(name).is_file());
        let binary = find("dovecot").ok_or(format!("no dovecot binary; {install}"))?;
        let doveadm = find("doveadm").ok_or(format!("no doveadm; {install}"))?;
        if !libexec("lmtp") {
            return Err(format!("no Dovecot LMTP server (dovecot-lmtpd); {install}"));
        }
        if !is_root() {
            return Err("the private Dovecot instance needs root (it switches to the mail user)".into());
        }
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| format!("Dovecot {}", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|_| "Dovecot (version unknown)".into());
        let (uid, gid) =
            user_ids(DOVECOT_MAIL_USER).ok_or(format!("no user {DOVECOT_MAIL_USER:?} in /etc/passwd"))?;
        Ok(DovecotSetup {
            binary,
            doveadm,
            version,
            uid,
            gid,
            imap: libexec("imap") && libexec("imap-login"),
            fts_xapian: LIBEXEC
                .iter()
                .any(|d| Path::new(d).join("modules/lib21_fts_xapian_plugin.so").is_file()),
        })
    }
}

/// The benchmark user's password as an Argon2id PHC string, which Dovecot verifies with
/// libsodium (a passwd-file entry for `user`).
pub struct PasswordHash {
    pub user: String,
    pub phc: String,
}

/// What a private Dovecot serves.
pub struct DovecotOptions {
    /// The LMTP port (always served).
    pub lmtp_port: u16,
    /// An IMAP port, if IMAP is served (needs `dovecot-imapd`).
    pub imap_port: Option<u16>,
    /// An IMAPS (implicit TLS) port, with a self-signed certificate made for the instance.
    pub imaps_port: Option<u16>,
    /// The benchmark user's password hash, verified as mailvault verifies it; `None`: no
    /// password needed.
    pub password: Option<PasswordHash>,
    /// Load the Xapian full-text search plugin (needs `dovecot-fts-xapian`).
    pub fts_xapian: bool,
    /// `mail_fsync` (`always`, `optimized` or `never`).
    pub mail_fsync: &'static str,
}

/// The configuration of a private Dovecot under `dir`: everything (sockets, state, logs,
/// maildirs under `dir/mail/USER`) stays in it.
pub fn config(dir: &Path, setup: &DovecotSetup, o: &DovecotOptions) -> String {
    let d = dir.display();
    let (uid, gid) = (setup.uid, setup.gid);
    let protocols = if o.imap_port.is_some() {
        "lmtp imap"
    } else {
        "lmtp"
    };
    let passdb = match &o.password {
        // `$` would be taken for a setting's name in dovecot.conf: the hash goes in a file.
        Some(_) => format!("driver = passwd-file\n  args = {d}/passwd"),
        None => "driver = static\n  args = nopassword=y".into(),
    };
    let lmtp_port = o.lmtp_port;
    let ssl = match o.imaps_port {
        Some(_) => format!("ssl = yes\nssl_cert = <{d}/tls-cert.pem\nssl_key = <{d}/tls-key.pem"),
        None => "ssl = no".to_string(),
    };
    let mut text = format!(
        "# Private Dovecot for a mailvault benchmark: maildir under this directory.
protocols = {protocols}
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain
auth_username_format = %Ln
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = dovecot
default_login_user = dovenull
default_process_limit = 1000
default_client_limit = 4000
mail_location = maildir:{d}/mail/%u
mail_fsync = {fsync}
lmtp_save_to_detail_mailbox = no
passdb {{
  {passdb}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
",
        fsync = o.mail_fsync
    );
    if let Some(port) = o.imap_port {
        let imaps_port = o.imaps_port.unwrap_or(0);
        text.push_str(&format!(
            "service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
"
        ));
    }
    if o.fts_xapian {
        text.push_str(
            "mail_plugins = $mail_plugins fts fts_xapian
plugin {
  fts = xapian
  fts_xapian = partial=3 full=20 verbose=0
  fts_autoindex = yes
  fts_enforced = yes
}
",
        );
    }
    text
}

/// A running private Dovecot.
pub struct Dovecot {
    pub server: Server,
    pub config: PathBuf,
    pub root: PathBuf,
    pub lmtp: SocketAddr,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    doveadm: PathBuf,
}

impl Dovecot {
    /// Writes the configuration into `root` (created if needed; maildirs in `root/mail`) and
    /// starts `dovecot -F`, returning once its LMTP (and IMAP) ports accept connections.
    pub fn start(setup: &DovecotSetup, root: &Path, options: &DovecotOptions) -> BenchResult<Dovecot> {
        fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        // Dovecot's processes (the mail user, dovecot, dovenull) must reach into the directory.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        let mail = root.join("mail");
        for d in [root.join("run"), root.join("state"), mail.clone()] {
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::os::unix::fs::chown(&mail, Some(setup.uid), Some(setup.gid))
            .map_err(|e| format!("chown {}: {e}", mail.display()))?;
        if options.imaps_port.is_some() {
            let cert =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .map_err(|e| format!("a certificate for Dovecot: {e}"))?;
            fs::write(root.join("tls-cert.pem"), cert.cert.pem())?;
            fs::write(root.join("tls-key.pem"), cert.signing_key.serialize_pem())?;
        }
        if let Some(PasswordHash { user, phc }) = &options.password {
            fs::write(root.join("passwd"), format!("{user}:{{ARGON2ID}}{phc}\n"))?;
        }
        let config = root.join("dovecot.conf");
        fs::write(&config, self::config(root, setup, options))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let stderr_log = root.join("dovecot-stderr.log");
        let stderr = fs::File::create(&stderr_log).map_err(|e| format!("{}: {e}", stderr_log.display()))?;
        eprintln!("dovecot: starting `dovecot -F -c {}`", config.display());
        let child = Command::new(&setup.binary)
            .arg("-F")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", setup.binary.display()))?;
        let mut server = Server {
            child,
            what: "dovecot",
        };
        let lmtp = SocketAddr::from(([127, 0, 0, 1], options.lmtp_port));
        let imap = options.imap_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let imaps = options
            .imap_port
            .and(options.imaps_port)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let until = Instant::now() + START_TIMEOUT;
        for addr in std::iter::once(lmtp).chain(imap).chain(imaps) {
            while TcpStream::connect(addr).is_err() {
                server
                    .check_running(&stderr_log)
                    .map_err(|e| format!("{e}\ndovecot.log:\n{}", tail(&root.join("dovecot.log"), 20)))?;
                if Instant::now() >= until {
                    return fail(format!(
                        "dovecot did not listen on {addr} within {START_TIMEOUT:?}"
                    ));
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(Dovecot {
            server,
            config,
            root: root.to_path_buf(),
            lmtp,
            imap,
            imaps,
            doveadm: setup.doveadm.clone(),
        })
    }

    /// The last lines of dovecot.log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.root.join("dovecot.log"), lines)
    }

    /// `doveadm -c CONFIG ARGS…`, failing on a non-zero exit.
    pub fn doveadm(&self, args: &[&str]) -> BenchResult<std::process::Output> {
        let out = Command::new(&self.doveadm)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running doveadm: {e}"))?;
        if !out.status.success() {
            return fail(format!(
                "doveadm {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out)
    }

    /// `doveadm stop` (SIGTERM if that fails), then waits up to `timeout` for the master.
    pub fn stop(mut self, timeout: Duration) -> BenchResult<()> {
        if self.doveadm(&["stop"]).is_err() {
            self.server.terminate()?;
        }
        self.server.wait(timeout)?;
        Ok(())
    }
}

/// A process and its descendants (from /proc), as (pid, command name).
pub fn process_tree(root: u32) -> Vec<(u32, String)> {
    let mut all = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.filter_map(Result::ok) {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat[open + 1..close].to_string();
            let ppid = stat[close + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0);
            all.push((pid, ppid, comm));
        }
    }
    let mut tree: Vec<(u32, String)> = all
        .iter()
        .filter(|(pid, ..)| *pid == root)
        .map(|(pid, _, comm)| (*pid, comm.clone()))
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].0;
        for (pid, ppid, comm) in &all {
            if *ppid == parent {
                tree.push((*pid, comm.clone()));
            }
        }
        i += 1;
    }
    tree
}

/// CPU time (user + system, clock ticks) a process has used, from /proc; 0 if it is gone.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name: state is the 3rd field of stat, utime the 14th, stime
    // the 15th.
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let mut rest = stat[close + 2..].split_whitespace().skip(11);
    let mut next = || rest.next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    next() + next()
}

/// Waits until a server (a process and its descendants) is idle — less than 5 % of one core
/// over half a second — or `limit` passed; returns the seconds waited. A server that has
/// just taken in a mailbox still works on it (index merges, cache writes) for a while, and a
/// read measured meanwhile measures that too, on this 2-core machine.
pub fn wait_until_idle(root: u32, limit: Duration) -> f64 {
    const SAMPLE: Duration = Duration::from_millis(500);
    // Linux reports CPU time in 1/100 s (USER_HZ) on every architecture we run on.
    const IDLE_TICKS: u64 = 2;
    let start = std::time::Instant::now();
    let total = || process_tree(root).iter().map(|(p, _)| cpu_ticks(*p)).sum::<u64>();
    let mut before = total();
    while start.elapsed() < limit {
        std::thread::sleep(SAMPLE);
        let now = total();
        if now.saturating_sub(before) <= IDLE_TICKS {
            break;
        }
        before = now;
    }
    start.elapsed().as_secs_f64()
}

/// A process's resident memory (VmRSS) and proportional set size (Pss, shared pages divided
/// among the processes that map them), in bytes; 0 where unknown.
pub fn memory_of(pid: u32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let rss = fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| field(&s, "VmRSS:"))
        .unwrap_or(0);
    let pss = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|s| field(&s, "Pss:"))
        .unwrap_or(0);
    (rss, pss)
}
