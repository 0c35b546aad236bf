//! Postfix's journaling to the archive, asked of Postfix itself (`postconf`, `postmap -q`): a
//! copy of every message goes to the intake address (`always_bcc`, or `recipient_bcc_maps` /
//! `sender_bcc_maps` giving it or a `+extension` of it), `transport_maps` routes the address
//! to mailvault's LMTP or SMTP listener, and mailvault answers there
//! (docs/OPERATIONS.md §Journaling from Postfix).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::listeners::{probe, Door, Probe};
use super::Report;
use crate::config::Config;

/// Checks each intake address (given, or intake.accept's).
pub fn check(r: &mut Report, config: &Config, given: &[String], postfix_config: Option<&Path>) {
    let addresses: Vec<String> = if given.is_empty() {
        config.intake.accept.clone()
    } else {
        given.to_vec()
    };
    if addresses.is_empty() {
        r.skip("postfix: not checked: no intake address (--intake-address, or intake.accept)");
        return;
    }
    let postfix = Postfix::new(postfix_config);
    let main_cf = postfix_config
        .unwrap_or(Path::new("/etc/postfix"))
        .join("main.cf");
    if postfix.installed() && !main_cf.exists() {
        r.skip(format!(
            "postfix: not checked: postfix is installed but not configured here (no {})",
            main_cf.display()
        ));
        return;
    }
    let probe_domain = match postfix.parameter("mydomain") {
        Ok(domain) => domain.unwrap_or_else(|| "example.com".into()),
        Err(Missing::NotInstalled) => {
            r.skip("postfix: not checked: postfix not installed (no postconf)");
            return;
        }
        Err(Missing::Failed(e)) => {
            r.fail(
                format!("postfix: postconf fails: {e}"),
                "fix Postfix's configuration (postfix check)",
            );
            return;
        }
    };
    // A made-up user of the relay's own domain, as a map sees any sender or recipient.
    let probe_address = format!("doctor-probe@{probe_domain}");
    for address in &addresses {
        let Some((local, domain)) = address.rsplit_once('@') else {
            r.fail(
                format!("intake address {address:?} is not an address"),
                "give one like archive@vault.example",
            );
            continue;
        };
        let archive = Archive {
            local,
            domain,
            delimiter: config.intake.journal.recipient_delimiter,
        };
        check_journaling(r, &postfix, address, &archive, &probe_address);
        check_route(r, &postfix, config, address, &archive);
    }
}

/// An intake address, split.
struct Archive<'a> {
    local: &'a str,
    domain: &'a str,
    delimiter: char,
}

impl Archive<'_> {
    /// Whether Postfix's copy to `address` reaches this archive address: the address itself,
    /// or a `local+extension` of it (recipient-encoded journaling).
    fn receives(&self, address: &str) -> bool {
        let Some((local, domain)) = address.trim().rsplit_once('@') else {
            return false;
        };
        if !domain.eq_ignore_ascii_case(self.domain) {
            return false;
        }
        let base = local.split(self.delimiter).next().unwrap_or(local);
        base.eq_ignore_ascii_case(self.local)
    }
}

/// Does Postfix copy mail to the archive?
fn check_journaling(r: &mut Report, postfix: &Postfix, address: &str, archive: &Archive<'_>, probe: &str) {
    if let Ok(Some(bcc)) = postfix.parameter("always_bcc") {
        if archive.receives(&bcc) {
            r.ok(format!("postfix journals to {address}: always_bcc = {bcc}"));
            return;
        }
    }
    for parameter in ["recipient_bcc_maps", "sender_bcc_maps"] {
        let Ok(Some(value)) = postfix.parameter(parameter) else {
            continue;
        };
        for map in maps(&value) {
            if let Some(copy) = postfix.lookup(map, &address_keys(probe)) {
                if archive.receives(&copy) {
                    r.ok(format!(
                        "postfix journals to {address}: {parameter} gives {copy} for {probe}"
                    ));
                    return;
                }
            }
        }
    }
    r.fail(
        format!(
            "postfix does not journal to {address}: always_bcc, recipient_bcc_maps and sender_bcc_maps give no copy to it (for {probe})"
        ),
        "set always_bcc, or the *_bcc_maps of docs/OPERATIONS.md §Journaling from Postfix, then postfix reload",
    );
}

/// Does Postfix send the archive's mail to mailvault, and does mailvault answer there?
fn check_route(r: &mut Report, postfix: &Postfix, config: &Config, address: &str, archive: &Archive<'_>) {
    let add = format!(
        "add `{} lmtp:inet:{}` to the transport map, postmap it and postfix reload",
        archive.domain,
        config
            .intake
            .lmtp
            .map_or("HOST:PORT".to_string(), |a| a.to_string())
    );
    let maps_value = postfix
        .parameter("transport_maps")
        .ok()
        .flatten()
        .unwrap_or_default();
    let found = maps(&maps_value).into_iter().find_map(|map| {
        postfix
            .lookup(map, &transport_keys(address, archive.domain))
            .map(|t| (map, t))
    });
    let Some((map, transport)) = found else {
        r.fail(format!("postfix: no transport_maps entry for {address}"), add);
        return;
    };
    let Some(next) = Transport::parse(&transport) else {
        r.fail(
            format!("postfix routes {address} to {transport:?} ({map}), which doctor cannot follow"),
            add,
        );
        return;
    };
    let listeners = [
        (Door::Lmtp, "lmtp", config.intake.lmtp),
        (Door::Smtp, "smtp", config.intake.smtp),
    ];
    let Some(hop) = next.resolve() else {
        r.fail(
            format!("postfix routes {address} to {transport} ({map}): the host does not resolve"),
            add,
        );
        return;
    };
    let listener = listeners
        .iter()
        .filter(|(_, name, _)| {
            next.transport == *name || !["lmtp", "smtp"].contains(&next.transport.as_str())
        })
        .find(|(_, _, l)| l.is_some_and(|l| same_listener(hop, l)));
    let Some((door, name, _)) = listener else {
        let ours: Vec<String> = listeners
            .iter()
            .filter_map(|(_, name, l)| l.map(|l| format!("{name} {l}")))
            .collect();
        r.fail(
            format!(
                "postfix routes {address} to {transport} ({map}), not to mailvault's listener ({})",
                if ours.is_empty() {
                    "none configured".into()
                } else {
                    ours.join(", ")
                }
            ),
            add,
        );
        return;
    };
    r.ok(format!(
        "postfix routes {address} to {transport} ({map}): mailvault's {name} listener"
    ));
    match probe(*door, hop) {
        Probe::Mailvault(_) => r.ok(format!("postfix's next hop {hop}: mailvault answers")),
        Probe::Free => r.fail(
            format!("postfix's next hop {hop}: nobody answers"),
            "start mailvault serve; Postfix keeps the journal copies queued until it answers",
        ),
        Probe::Other(answer) => r.fail(
            format!("postfix's next hop {hop}: not mailvault ({answer})"),
            "free the address for mailvault",
        ),
        Probe::Unbindable(e) => r.fail(
            format!("postfix's next hop {hop}: {e}"),
            "start mailvault serve there",
        ),
    }
}

/// Whether a next hop reaches a listener bound to `listener` (one on every address is reached
/// on any of them).
fn same_listener(hop: SocketAddr, listener: SocketAddr) -> bool {
    hop.port() == listener.port() && (hop.ip() == listener.ip() || listener.ip().is_unspecified())
}

/// The lookup keys Postfix tries for an address in an access-style table: the address, then
/// `@domain` (for regexp tables only the first applies, and is enough).
fn address_keys(address: &str) -> Vec<String> {
    let mut keys = vec![address.to_string()];
    if let Some((_, domain)) = address.rsplit_once('@') {
        keys.push(format!("@{domain}"));
    }
    keys
}

/// The keys Postfix's transport(5) lookup tries: the address, the domain, then each parent
/// domain as `.parent` (its default `parent_domain_matches_subdomains` leaves that to the
/// dot form).
fn transport_keys(address: &str, domain: &str) -> Vec<String> {
    let mut keys = vec![address.to_string(), domain.to_string()];
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        keys.push(format!(".{parent}"));
        rest = parent;
    }
    keys
}

/// The lookup tables of a `*_maps` value (`hash:/etc/postfix/transport, regexp:/x`).
fn maps(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|m| !m.is_empty())
        .collect()
}

/// A transport(5) result: `lmtp:inet:127.0.0.1:2424`, `lmtp:[127.0.0.1]:2424`,
/// `smtp:[vault.example]:2525`.
#[derive(Debug, PartialEq, Eq)]
struct Transport {
    transport: String,
    host: String,
    port: u16,
}

impl Transport {
    fn parse(result: &str) -> Option<Transport> {
        let (transport, next) = result.trim().split_once(':')?;
        let next = next.strip_prefix("inet:").unwrap_or(next);
        if next.is_empty() || next.starts_with("unix:") || next.starts_with('/') {
            return None;
        }
        let default_port = if transport == "lmtp" { 24 } else { 25 };
        let (host, port) = match next.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']')?;
                let port = match after.strip_prefix(':') {
                    Some(p) => p.parse().ok()?,
                    None if after.is_empty() => default_port,
                    None => return None,
                };
                (host.strip_prefix("ipv6:").unwrap_or(host), port)
            }
            None => match next.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()?),
                None => (next, default_port),
            },
        };
        Some(Transport {
            transport: transport.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The first address the host resolves to.
    fn resolve(&self) -> Option<SocketAddr> {
        (self.host.as_str(), self.port).to_socket_addrs().ok()?.next()
    }
}

/// Why a Postfix parameter could not be read.
enum Missing {
    NotInstalled,
    Failed(String),
}

/// Postfix's command-line tools, for one configuration directory.
struct Postfix {
    config_dir: Option<PathBuf>,
}

impl Postfix {
    fn new(config_dir: Option<&Path>) -> Postfix {
        Postfix {
            config_dir: config_dir.map(Path::to_path_buf),
        }
    }

    /// `postconf`/`postmap`, from PATH or /usr/sbin (not on a normal user's PATH).
    fn command(&self, tool: &str) -> Command {
        let in_sbin = Path::new("/usr/sbin").join(tool);
        let mut command = if in_sbin.exists() {
            Command::new(in_sbin)
        } else {
            Command::new(tool)
        };
        if let Some(dir) = &self.config_dir {
            command.arg("-c").arg(dir);
        }
        command
    }

    /// Whether `postconf` is there to ask.
    fn installed(&self) -> bool {
        Path::new("/usr/sbin/postconf").exists()
            || std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("postconf").exists()))
    }

    /// A main.cf parameter with `$names` expanded; `None` when empty.
    fn parameter(&self, name: &str) -> Result<Option<String>, Missing> {
        let out = self
            .command("postconf")
            .args(["-x", "-h", name])
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Missing::NotInstalled,
                _ => Missing::Failed(e.to_string()),
            })?;
        if !out.status.success() {
            return Err(Missing::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok((!value.is_empty()).then_some(value))
    }

    /// The first of `keys` the table `map` has, with its value (`postmap -q`).
    fn lookup(&self, map: &str, keys: &[String]) -> Option<String> {
        keys.iter().find_map(|key| {
            let out = self
                .command("postmap")
                .arg("-q")
                .arg(key)
                .arg(map)
                .output()
                .ok()?;
            let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !value.is_empty()).then_some(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_results_parse_as_postfix_reads_them() {
        let t = |s| Transport::parse(s).map(|t| (t.transport, t.host, t.port));
        let want = |tr: &str, h: &str, p| Some((tr.to_string(), h.to_string(), p));
        assert_eq!(t("lmtp:inet:127.0.0.1:2424"), want("lmtp", "127.0.0.1", 2424));
        assert_eq!(t("lmtp:[127.0.0.1]:2424"), want("lmtp", "127.0.0.1", 2424));
        assert_eq!(t("lmtp:inet:[::1]:2424"), want("lmtp", "::1", 2424));
        assert_eq!(
            t("smtp:[vault.example]:2525"),
            want("smtp", "vault.example", 2525)
        );
        assert_eq!(t("smtp:[vault.example]"), want("smtp", "vault.example", 25));
        assert_eq!(t("lmtp:vault.example"), want("lmtp", "vault.example", 24));
        assert_eq!(t("lmtp:unix:/run/mailvault.sock"), None);
        assert_eq!(t("discard:"), None);
        assert_eq!(t("error"), None);
    }

    #[test]
    fn map_lists_and_lookup_keys() {
        assert_eq!(
            maps("hash:/etc/postfix/transport, regexp:/etc/postfix/t2\n  pcre:/x"),
            ["hash:/etc/postfix/transport", "regexp:/etc/postfix/t2", "pcre:/x"]
        );
        assert_eq!(
            transport_keys("archive@mail.vault.example", "mail.vault.example"),
            [
                "archive@mail.vault.example",
                "mail.vault.example",
                ".vault.example",
                ".example"
            ]
        );
    }

    #[test]
    fn an_extension_of_the_archive_address_reaches_it() {
        let archive = Archive {
            local: "archive",
            domain: "vault.example",
            delimiter: '+',
        };
        assert!(archive.receives("archive@vault.example"));
        assert!(archive.receives("archive+to=bob=example.org@Vault.Example"));
        assert!(!archive.receives("archivist@vault.example"));
        assert!(!archive.receives("archive@other.example"));
        assert!(!archive.receives("not an address"));
    }

    #[test]
    fn a_listener_on_every_address_is_reached_on_loopback() {
        let hop: SocketAddr = "127.0.0.1:2424".parse().unwrap();
        assert!(same_listener(hop, "0.0.0.0:2424".parse().unwrap()));
        assert!(same_listener(hop, hop));
        assert!(!same_listener(hop, "127.0.0.1:2425".parse().unwrap()));
        assert!(!same_listener(hop, "192.0.2.1:2424".parse().unwrap()));
    }
}
