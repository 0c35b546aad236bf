//! Password hashing: Argon2id with the OWASP-recommended parameters (m = 19 MiB, t = 2, p = 1),
//! stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! The parameters are pinned here rather than taken from the crate's defaults, so an upgrade
//! of `argon2` never changes them silently. Verification reads the parameters from the stored
//! string, so hashes made with other parameters keep working.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::{Error, Result};

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: bounds the work a login can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hash of a random password that was never stored, made with the parameters above. Logins for unknown names
/// are verified against it, so they cost the same time as logins for real ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$S5VsmtQdxZp+U+uAy+OPPQ$Z53ho6X8M6Bg1qolCqnaT6jN/dKggsI3kxaVIKCDJkQ";

fn hasher() -> Argon2<'static> {
    // The constants are within Argon2's limits, so this cannot fail.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password against the rules above. The message never contains the password.
pub fn check_new_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Rejected(format!(
            "the password is too short (at least {MIN_PASSWORD_CHARS} characters)"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Rejected(format!(
            "the password is too long (at most {MAX_PASSWORD_BYTES} bytes)"
        )));
    }
    // IMAP AUTHENTICATE PLAIN separates fields with NUL, and line-based input cannot carry
    // line breaks: such a password could never be used to log in.
    if password.chars().any(|c| c == '\0' || c == '\r' || c == '\n') {
        return Err(Error::Rejected(
            "the password contains a NUL or line-break character".into(),
        ));
    }
    Ok(())
}

/// Hashes a new password (checked with [`check_new_password`]) with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    check_new_password(password)?;
    hash_unchecked(password)
}

/// Hashes a password someone else accepted (pass-through logins: the mail server's rules, not
/// ours, decide what a password may be), with a fresh random salt.
pub(crate) fn hash_unchecked(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::System(format!("no system randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    let hasher = hasher();
    let failed = |e: String| Error::Internal(format!("hashing the password: {e}"));
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| failed(e.to_string()))?;
    // In the pooled working memory, like verifications (`verify_password`).
    let mut memory = WorkingMemory::get().take(hasher.params().block_count());
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        hasher
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, memory.blocks())
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    .map_err(|e| failed(e.to_string()))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: hasher
            .params()
            .try_into()
            .map_err(|e: argon2::password_hash::Error| failed(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Checks that `phc` is an Argon2id PHC string; the error says what is wrong with it.
pub fn check_stored_hash(phc: &str) -> std::result::Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("password_hash is not a PHC string: {e}"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!(
            "password_hash uses {}, expected argon2id",
            hash.algorithm
        ));
    }
    Params::try_from(&hash).map_err(|e| format!("password_hash has bad Argon2 parameters: {e}"))?;
    Ok(())
}

/// Whether `password` matches the stored PHC string. A string that does not parse matches
/// nothing (load-time checks keep those out of the users file).
///
/// Each verification needs Argon2's working memory (19 MiB). Verifications run at most one
/// per core at a time, in buffers kept for reuse: a burst of logins (200 mail clients
/// reconnecting, or an attacker) neither multiplies that memory nor leaves freed 19 MiB
/// blocks scattered over the allocator's per-thread arenas, where they would stay resident.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(&hash)) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut memory = WorkingMemory::get().take(params.block_count());
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, memory.blocks())
            .map_err(|_| argon2::password_hash::Error::Password)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|computed| computed == expected)
}

/// Argon2 working memory for verifications, at most one buffer per core.
struct WorkingMemory {
    state: Mutex<Buffers>,
    returned: Condvar,
}

struct Buffers {
    /// Buffers not in use.
    free: Vec<Vec<Block>>,
    /// Buffers handed out.
    in_use: usize,
    /// Most buffers in use at once.
    limit: usize,
}

/// One verification's buffer, given back to the pool when dropped.
struct Lease {
    blocks: Vec<Block>,
    /// How many blocks this verification uses (hashes with other parameters may use fewer).
    len: usize,
}

impl WorkingMemory {
    fn get() -> &'static WorkingMemory {
        static POOL: OnceLock<WorkingMemory> = OnceLock::new();
        POOL.get_or_init(|| WorkingMemory {
            state: Mutex::new(Buffers {
                free: Vec::new(),
                in_use: 0,
                limit: std::thread::available_parallelism().map_or(2, |n| n.get()),
            }),
            returned: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Buffers> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of at least `len` blocks; waits while every core is verifying.
    fn take(&'static self, len: usize) -> Lease {
        let mut state = self.lock();
        while state.in_use >= state.limit {
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.in_use += 1;
        let mut blocks = state.free.pop().unwrap_or_default();
        drop(state);
        if blocks.len() < len {
            blocks.resize(len, Block::default());
        }
        Lease { blocks, len }
    }
}

impl Lease {
    fn blocks(&mut self) -> &mut [Block] {
        &mut self.blocks[..self.len]
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let pool = WorkingMemory::get();
        let mut state = pool.lock();
        state.in_use -= 1;
        // Keep buffers of the pinned size; one made for an unusually large hash is freed.
        if self.blocks.len() <= MEMORY_KIB as usize {
            state.free.push(std::mem::take(&mut self.blocks));
        }
        drop(state);
        pool.returned.notify_one();
    }
}

/// Spends the time of one verification without matching anything (unknown login names).
pub fn verify_dummy(password: &str) {
    let _ = verify_password(password, DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_pinned_parameters_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        check_stored_hash(&phc).unwrap();
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        // Fresh salt every time.
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[test]
    fn concurrent_verifications_keep_at_most_one_buffer_per_core() {
        let phc = hash_password("correct horse").unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let phc = &phc;
                s.spawn(move || {
                    assert!(verify_password("correct horse", phc));
                    assert!(!verify_password(&format!("wrong {i}"), phc));
                });
            }
        });
        let pool = WorkingMemory::get().lock();
        assert!(pool.free.len() <= pool.limit, "{} buffers kept", pool.free.len());
        assert!(pool.free.iter().all(|b| b.len() == MEMORY_KIB as usize));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        check_stored_hash(DUMMY_HASH).unwrap();
        let real = hash_password("whatever password").unwrap();
        let params = |s: &str| s.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(DUMMY_HASH), params(&real));
    }

    #[test]
    fn new_passwords_are_checked() {
        for bad in ["short", "", "has\nnewline", "has\0nul-byte", &"x".repeat(1025)] {
            assert!(check_new_password(bad).is_err(), "{bad:?}");
            assert!(hash_password(bad).is_err(), "{bad:?}");
        }
        check_new_password("eight ch").unwrap();
        check_new_password("ünïcödé!").unwrap();
    }

    #[test]
    fn stored_hashes_must_be_argon2id_phc_strings() {
        assert!(check_stored_hash("plaintext").is_err());
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$ZSUDMCtRU10frqE6hrvGLQ$n0LFPZoegxzL8Jhss7wxH5J/QQpEVGqDh9g09u6PG8s";
        assert!(check_stored_hash(argon2i).unwrap_err().contains("argon2i"));
        assert!(!verify_password("x", "plaintext"));
    }
}
