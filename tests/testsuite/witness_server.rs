//! A small C2SP tlog-witness (<https://c2sp.org/tlog-witness>) for the tests: a real HTTP
//! server on a free loopback port with its own Ed25519 key, answering `POST /add-checkpoint`
//! as the spec says. It is written from the spec, not from the archive's client, and shares
//! no code with the archive: its own signed-note check of the log's signature, its own RFC
//! 9162 consistency proof check, its own `cosignature/v1` signer.
//!
//! State: per log origin, the newest (size, root) it cosigned, kept in memory for its life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

type Hash = [u8; 32];

/// A running test witness; stops when dropped.
pub struct TestWitness {
    /// Its submission prefix (`http://127.0.0.1:<port>`).
    pub url: String,
    /// Its verifier key string (type 0x04).
    pub vkey: String,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    /// Key name, e.g. `witness.test/w1`.
    name: String,
    key: SigningKey,
    /// The log it witnesses: origin and Ed25519 public key.
    log_origin: String,
    log_key: VerifyingKey,
    /// origin → newest cosigned (size, root).
    latest: Mutex<HashMap<String, (u64, Hash)>>,
    /// (old, checkpoint size, status) of every request, for the tests to look at.
    requests: Mutex<Vec<(u64, u64, u16)>>,
}

impl TestWitness {
    /// Starts a witness named `name` trusting the log key `log_vkey` (`mailvault key show`).
    pub fn start(name: &str, log_vkey: &str) -> TestWitness {
        let (log_origin, log_key) = parse_log_vkey(log_vkey.trim());
        let key = SigningKey::from_bytes(&fresh_seed(name));
        let inner = Arc::new(Inner {
            name: name.to_string(),
            key,
            log_origin,
            log_key,
            latest: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let vkey = cosigner_vkey(name, &inner.key.verifying_key());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind test witness");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/add-checkpoint", axum::routing::post(add_checkpoint))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestWitness {
            url,
            vkey,
            inner,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The newest tree size it cosigned for the log.
    pub fn cosigned_size(&self) -> Option<u64> {
        let latest = self.inner.latest.lock().unwrap();
        latest.get(&self.inner.log_origin).map(|(s, _)| *s)
    }

    /// (old, size, status) of each request so far.
    pub fn requests(&self) -> Vec<(u64, u64, u16)> {
        self.inner.requests.lock().unwrap().clone()
    }
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A seed no other test witness shares (tests run in parallel): hashed from the name, the
/// process, the time and a counter.
fn fresh_seed(name: &str) -> [u8; 32] {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_be_bytes(),
    );
    h.update(
        COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes(),
    );
    h.finalize().into()
}

/// `name+hex(keyid)+base64(0x04 ‖ key)`, keyid = SHA-256(name ‖ "\n" ‖ 0x04 ‖ key)[:4].
fn cosigner_vkey(name: &str, key: &VerifyingKey) -> String {
    let id = key_id(name, 0x04, key.as_bytes());
    let mut typed = vec![0x04];
    typed.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(id), B64.encode(typed))
}

fn key_id(name: &str, alg: u8, key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The log's signed-note verifier key (type 0x01 Ed25519).
fn parse_log_vkey(vkey: &str) -> (String, VerifyingKey) {
    let mut parts = vkey.splitn(3, '+');
    let name = parts.next().unwrap().to_string();
    let _id = parts.next().unwrap();
    let typed = B64.decode(parts.next().unwrap()).unwrap();
    assert_eq!(typed[0], 0x01, "the log key is an Ed25519 signed-note key");
    let key = VerifyingKey::from_bytes(&typed[1..].try_into().unwrap()).unwrap();
    (name, key)
}

fn answer(status: StatusCode, content_type: &str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type.to_string())], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Inner>>, body: String) -> Response {
    let (old, size, response) = w.handle(&body);
    w.requests
        .lock()
        .unwrap()
        .push((old, size, response.status().as_u16()));
    response
}

impl Inner {
    /// The add-checkpoint steps of the spec, in its order.
    fn handle(&self, body: &str) -> (u64, u64, Response) {
        let bad = |why: &str| {
            (
                0,
                0,
                answer(StatusCode::BAD_REQUEST, "text/plain", format!("{why}\n")),
            )
        };
        // old size line, proof lines, empty line, checkpoint.
        let Some((head, note)) = body.split_once("\n\n") else {
            return bad("no empty line");
        };
        let mut lines = head.split('\n');
        let Some(old) = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return bad("bad old size line");
        };
        let mut proof = Vec::new();
        for line in lines {
            match B64.decode(line).ok().and_then(|h| <Hash>::try_from(h).ok()) {
                Some(h) => proof.push(h),
                None => return bad("bad proof line"),
            }
        }
        if proof.len() > 63 {
            return bad("too many proof lines");
        }
        // The note: text, blank line, signature lines.
        let Some((text, sigs)) = note.split_once("\n\n") else {
            return bad("checkpoint without signatures");
        };
        let text = format!("{text}\n");
        let mut fields = text.split('\n');
        let origin = fields.next().unwrap_or_default();
        if origin != self.log_origin {
            return (
                old,
                0,
                answer(StatusCode::NOT_FOUND, "text/plain", "unknown log\n".into()),
            );
        }
        let log_id = key_id(origin, 0x01, self.log_key.as_bytes());
        let signed = sigs.lines().any(|line| {
            let Some((name, blob)) = line.strip_prefix("\u{2014} ").and_then(|r| r.split_once(' ')) else {
                return false;
            };
            let Ok(sig) = B64.decode(blob) else { return false };
            name == origin
                && sig.len() == 68
                && sig[..4] == log_id
                && ed25519_dalek::Signature::from_slice(&sig[4..])
                    .is_ok_and(|s| self.log_key.verify(text.as_bytes(), &s).is_ok())
        });
        if !signed {
            return (
                old,
                0,
                answer(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "not signed by the log\n".into(),
                ),
            );
        }
        let size: u64 = match fields.next().and_then(|s| s.parse().ok()) {
            Some(s) => s,
            None => return bad("bad size"),
        };
        let Some(root) = fields
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r).ok())
        else {
            return bad("bad root");
        };
        if old > size {
            return bad("old size above the checkpoint size");
        }
        // Checking the old size and recording the new checkpoint happen under one lock.
        let mut latest = self.latest.lock().unwrap();
        let (known_size, known_root) = latest
            .get(origin)
            .copied()
            .unwrap_or((0, Sha256::digest(b"").into()));
        let conflict = || {
            answer(
                StatusCode::CONFLICT,
                "text/x.tlog.size",
                format!("{known_size}\n"),
            )
        };
        if old != known_size {
            return (old, size, conflict());
        }
        if old == size {
            if root != known_root {
                return (old, size, conflict());
            }
        } else if old == 0 {
            if !proof.is_empty() {
                return (
                    old,
                    size,
                    answer(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "text/plain",
                        "proof from 0 must be empty\n".into(),
                    ),
                );
            }
        } else if !consistent(old, size, &known_root, &root, &proof) {
            return (
                old,
                size,
                answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "text/plain",
                    "inconsistent\n".into(),
                ),
            );
        }
        latest.insert(origin.to_string(), (size, root));
        drop(latest);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let message = format!("cosignature/v1\ntime {time}\n{text}");
        let signature = self.key.sign(message.as_bytes());
        let mut blob = key_id(&self.name, 0x04, self.key.verifying_key().as_bytes()).to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        let line = format!("\u{2014} {} {}\n", self.name, B64.encode(blob));
        (
            old,
            size,
            answer(StatusCode::OK, "text/plain; charset=utf-8", line),
        )
    }
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 9162 §2.1.4.2: verifying a consistency proof from (`n1`, `r1`) to (`n2`, `r2`).
fn consistent(n1: u64, n2: u64, r1: &Hash, r2: &Hash, proof: &[Hash]) -> bool {
    if n1 == 0 || n1 > n2 {
        return false;
    }
    if n1 == n2 {
        return proof.is_empty() && r1 == r2;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    // 2. If first is an exact power of 2, prepend first_hash to the path.
    if n1.is_power_of_two() {
        path.insert(0, *r1);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    // 3-4.
    let mut fn_ = n1 - 1;
    let mut sn = n2 - 1;
    // 5. If LSB(fn) is set, right-shift both until LSB(fn) is not set.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 6.
    let mut fr = *first;
    let mut sr = *first;
    // 7.
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 8.
    fr == *r1 && sr == *r2 && sn == 0
}

/// Hex without a crate.
mod hex {
    pub fn encode(bytes: [u8; 4]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
