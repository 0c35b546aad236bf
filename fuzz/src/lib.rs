//! What the fuzz targets share: an allocator that turns a huge single allocation into a
//! crash, a scratch directory per process, a small archive (store, users, a few messages)
//! built once per process, and a loopback client that plays one fuzz input into a server and
//! waits for the session to end.
//!
//! Everything a target needs per process is built lazily on its first input and kept: a
//! fuzzer runs millions of inputs, and building a store costs far more than one input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use archive_core::access::{Role, UserRecord, Users};
use archive_core::audit::AuditEvent;
use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest single allocation a target may make. The project rule is "no allocation
/// proportional to a number it states": a length field that claims 4 GiB must not become a
/// 4 GiB `Vec::with_capacity`. libFuzzer's `-malloc_limit_mb` only sees allocations when a
/// sanitizer runtime provides malloc hooks; this check works with `--sanitizer none` too.
pub const MAX_SINGLE_ALLOCATION: usize = 256 << 20;

/// The system allocator, aborting (a crash libFuzzer saves the input of) on any single
/// allocation above [`MAX_SINGLE_ALLOCATION`]. Every target installs it:
/// `#[global_allocator] static ALLOCATOR: CappedAllocator = CappedAllocator;`
pub struct CappedAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the size check only
// decides whether to abort first.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check_size(size: usize) {
    if size > MAX_SINGLE_ALLOCATION {
        // No formatting machinery here: it may allocate, and this is the allocator.
        let msg = b"==fuzz== single allocation above MAX_SINGLE_ALLOCATION (256 MiB): \
a size taken from input was trusted\n";
        // SAFETY: writing a static buffer to fd 2.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
        }
        std::process::abort();
    }
}

/// A directory for this process's files, removed at exit: in /dev/shm when it exists, so
/// that the fsyncs of the store (every acknowledged mail, every audit record) cost nothing.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("mailvault-fuzz-").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("mailvault-fuzz-").tempdir()
        }
        .expect("a scratch directory");
        let path = dir.keep();
        *SCRATCH_TO_REMOVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(remove_scratch);
        }
        path
    })
}

static SCRATCH_TO_REMOVE: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH_TO_REMOVE.lock().ok().and_then(|mut d| d.take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Stack size of the threads parsing runs on in the servers: tokio's default for its worker
/// and blocking threads (2 MiB), which is far less than a main thread's 8 MiB.
pub const SERVER_THREAD_STACK: usize = 2 << 20;

/// Runs `f` on a thread with the stack a server thread has ([`SERVER_THREAD_STACK`]), so that
/// recursion that would only overflow there is caught here too.
pub fn on_server_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(SERVER_THREAD_STACK)
            .spawn_scoped(scope, || {
                catch_stack_overflow_on_this_thread();
                f()
            })
            .expect("spawn a parser thread")
            .join()
            // A panic aborted the process already (libfuzzer-sys's hook); this is unreachable.
            .unwrap_or_else(|_| std::process::abort())
    })
}

/// Size of the alternate signal stack libFuzzer's crash handler runs on after a stack
/// overflow (it prints a stack trace and writes the input out).
const ALT_STACK: usize = 256 << 10;

/// A stack overflow is a SIGSEGV on the guard page, and a handler cannot run on the stack that
/// overflowed. libFuzzer's handler (installed before the first input) does not ask for an
/// alternate stack, and under libFuzzer's `main` Rust's runtime sets none up: without this,
/// the process just dies with SIGSEGV and the input is lost. This gives the calling thread an
/// alternate signal stack (freed when the thread ends) and makes the SIGSEGV and SIGBUS
/// handlers use it.
pub fn catch_stack_overflow_on_this_thread() {
    static HANDLERS: std::sync::Once = std::sync::Once::new();
    HANDLERS.call_once(|| {
        for signal in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: reads the installed action and installs it again with SA_ONSTACK.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut action) == 0 {
                    action.sa_flags |= libc::SA_ONSTACK;
                    libc::sigaction(signal, &action, std::ptr::null_mut());
                }
            }
        }
    });
    thread_local! {
        static ALT: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
    }
    ALT.with(|alt| {
        let mut alt = alt.borrow_mut();
        if alt.is_none() {
            *alt = Some(AltStack::install());
        }
    });
}

/// This thread's alternate signal stack while it lives (the memory is only held, never read).
struct AltStack {
    _memory: Vec<u8>,
}

impl AltStack {
    fn install() -> AltStack {
        let mut memory = vec![0u8; ALT_STACK];
        let stack = libc::stack_t {
            ss_sp: memory.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: memory.len(),
        };
        // SAFETY: the memory outlives its use: Drop disables the stack before freeing it.
        unsafe {
            libc::sigaltstack(&stack, std::ptr::null_mut());
        }
        AltStack { _memory: memory }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: turns this thread's alternate stack off before its memory is freed.
        unsafe {
            libc::sigaltstack(&disable, std::ptr::null_mut());
        }
    }
}

/// The tokio runtime the servers and the client run on (multi-threaded: the IMAP server's
/// store calls use `block_in_place`).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // FETCH and SEARCH run on blocking threads: a stack overflow there must be caught.
            .on_thread_start(catch_stack_overflow_on_this_thread)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A user who sees the mail of [`READER_ADDRESS`] (INBOX, Sent).
pub const READER: &str = "reader";
/// Sees everything (`Archive`, `Domains/…`).
pub const AUDITOR: &str = "auditor";
/// The relay account for SMTP AUTH (`[intake] relay_users`); its address sees no mail.
pub const RELAY: &str = "relay";
/// The password of every user.
pub const PASSWORD: &str = "fuzz-password";
/// The reader's address: the messages below are addressed to it.
pub const READER_ADDRESS: &str = "reader@example.org";

/// A store in the scratch directory with a few messages (UIDs made sparse by audit records
/// between them) and two users whose password hashes are cheap to verify.
pub struct Archive {
    /// The data directory (store and users file).
    pub dir: PathBuf,
    pub store: Arc<Store>,
    /// The log seqs (= UIDs) of the messages, ascending.
    pub uids: Vec<u64>,
}

/// The messages of [`archive`]: real structure (multipart, nested message/rfc822, NUL
/// bytes, 8-bit headers, no header at all) from fixtures/.
const MESSAGES: &[&[u8]] = &[
    include_bytes!("../../fixtures/search/en-report.eml"),
    include_bytes!("../../fixtures/search/de-rechnung.eml"),
    include_bytes!("../../fixtures/journal/exchange-journal-report.eml"),
    include_bytes!("../../fixtures/edge/nul-bytes.eml"),
    include_bytes!("../../fixtures/edge/8bit-headers.eml"),
    include_bytes!("../../fixtures/edge/not-mail.bin"),
    include_bytes!("../../fixtures/search/no-date.eml"),
];

/// The archive of this process, built on first use.
pub fn archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(build_archive)
}

fn build_archive() -> Archive {
    let dir = scratch_dir().join("store");
    let key = dir.join("signing.key");
    Store::create(&dir, &key).expect("create the fuzz store");
    let config = StoreConfig {
        // SEARCH's content keys need the full-text index, kept by a background thread: it
        // indexes the few messages below at once, then only the audit records sessions add.
        search_indexing: SearchIndexing::Live,
        ..StoreConfig::default()
    };
    let store = Arc::new(Store::open(&dir, &key, config).expect("open the fuzz store"));
    let mut uids = Vec::new();
    for (i, raw) in MESSAGES.iter().enumerate() {
        let envelope = Envelope::lmtp("sender@example.net", &[READER_ADDRESS, "other@example.com"]);
        let appended = store
            .append_message(&envelope, raw, OnDuplicate::RecordArrival)
            .expect("append a fuzz message");
        uids.push(appended.seq);
        // Gaps between UIDs, growing: 1 record, 2, 3, …
        for _ in 0..=i {
            store
                .append_audit(&AuditEvent {
                    actor: "fuzz".into(),
                    action: "setup".into(),
                    target: String::new(),
                    origin: "local".into(),
                    ..Default::default()
                })
                .expect("append an audit record");
        }
    }
    add_users(&dir);
    Archive { dir, store, uids }
}

/// The users, then their password hashes replaced by Argon2id hashes with the smallest
/// parameters: the users file keeps each hash's own parameters, and a fuzzer that logs in on
/// every input cannot wait 19 MiB × 2 passes each time.
fn add_users(dir: &Path) {
    Users::update(dir, |users| {
        let reader = Role::user([READER_ADDRESS])?;
        users.add(UserRecord::new(READER, reader, PASSWORD)?)?;
        let auditor = Role::Auditor {
            domains: archive_core::access::AuditorDomains::All,
        };
        users.add(UserRecord::new(AUDITOR, auditor, PASSWORD)?)?;
        let relay = Role::user(["relay@relay.invalid"])?;
        users.add(UserRecord::new(RELAY, relay, PASSWORD)?)?;
        Ok(())
    })
    .expect("add the fuzz users");
    let path = dir.join("users.json");
    let text = std::fs::read(&path).expect("read users.json");
    let mut file: serde_json::Value = serde_json::from_slice(&text).expect("users.json is JSON");
    let cheap = cheap_hash(PASSWORD);
    for user in file["users"].as_array_mut().expect("a users array") {
        user["password_hash"] = serde_json::Value::String(cheap.clone());
    }
    let out = serde_json::to_vec_pretty(&file).expect("users.json");
    std::fs::write(&path, out).expect("write users.json");
}

/// An Argon2id PHC string with minimal cost (8 KiB, 1 pass).
pub fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("valid Argon2 parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("ZnV6enNhbHRmdXp6c2FsdA").expect("a valid salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash the fuzz password")
        .to_string()
}

/// How long one session may take, from connect until the server closes, before the input
/// counts as a hang. Far above anything a correct session needs for a 4 KiB input, below
/// the run scripts' `-timeout`, so the message says what hung.
pub const SESSION_DEADLINE: Duration = Duration::from_secs(20);

/// A loopback client source address that changes with every call (127.1.1.1, 127.1.2.1, …,
/// 50,800 of them before one comes again), so that per-address limits (failed logins,
/// connections) never carry from one input to the next.
pub fn fresh_loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (200 * 254);
    // Both parts are at most 200 and 254: no overflow.
    Ipv4Addr::new(127, 1 + (n / 254) as u8, 1 + (n % 254) as u8, 1)
}

/// Connects to `server` from `source` (any loopback address works on Linux). The socket
/// closes with a reset (zero linger), so the client leaves no TIME_WAIT behind. From
/// 127.0.0.1 the port is left to `connect`, which may reuse a loopback port still in
/// TIME_WAIT from a session the server closed; a port bound beforehand could not be, and
/// hundreds of sessions a second would use up the ephemeral range. Should it run out anyway,
/// the connect is retried for a while.
pub async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let mut attempts = 0;
    loop {
        let socket = TcpSocket::new_v4()?;
        socket.set_zero_linger()?;
        if source != Ipv4Addr::LOCALHOST {
            socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
        }
        match socket.connect(server).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 200 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends `input`, closes the sending side, and reads everything the server says until it
/// closes the connection. Writing and reading run at once: a server that answers while the
/// client still sends must not deadlock the two. Returns what the server sent.
pub async fn play(stream: TcpStream, input: &[u8]) -> Vec<u8> {
    let (mut rx, mut tx) = stream.into_split();
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // The server may close first (LOGOUT, QUIT, a limit): then the rest is not read.
        let _ = tx.write_all(&input).await;
        let _ = tx.shutdown().await;
        tx
    });
    let mut out = Vec::new();
    let _ = rx.read_to_end(&mut out).await;
    let _ = writer.await;
    out
}

/// Reads until a line that starts with `prefix` arrives; returns everything read, or `None`
/// if the connection closed first.
pub async fn read_until_line(stream: &mut TcpStream, prefix: &[u8]) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if seen
            .split(|b| *b == b'\n')
            .any(|line| line.starts_with(prefix) && line.ends_with(b"\r"))
        {
            return Some(seen);
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Runs `session` on the runtime; an input whose session outlives [`SESSION_DEADLINE`] is
/// a hang, and a crash libFuzzer keeps.
pub fn run_session<F: std::future::Future>(what: &str, session: F) -> F::Output {
    runtime().block_on(async {
        match tokio::time::timeout(SESSION_DEADLINE, session).await {
            Ok(out) => out,
            Err(_) => panic!(
                "{what}: the session did not end within {SESSION_DEADLINE:?} of the client closing its side"
            ),
        }
    })
}
