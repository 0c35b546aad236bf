//! Real tokens from `openssl ts -reply` (a throw-away CA and TSA made by
//! fixtures/tsa/make-tsa.sh in a temp dir), checked by our code and cross-checked with OpenSSL.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const NOTE: &[u8] = b"mailvault.example/log\n42\nq6IC1TknpVlU3LZrUCLTPd+AbBixyMK84JNdjbpDJzM=\n\n\xe2\x80\x94 mailvault.example/log AAAA\n";

/// A TSA in a temp dir: `ec` or `rsa` signing key.
struct Tsa {
    dir: tempfile::TempDir,
}

impl Tsa {
    fn new(kind: &str) -> Tsa {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tsa/make-tsa.sh");
        let status = Command::new("sh")
            .arg(script)
            .arg(dir.path())
            .arg(kind)
            .status()
            .unwrap();
        assert!(status.success());
        Tsa { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// OpenSSL's answer to `query`.
    fn reply(&self, query: &[u8]) -> Vec<u8> {
        let (q, r) = (self.path("query.tsq"), self.path("reply.tsr"));
        std::fs::write(&q, query).unwrap();
        let out = Command::new("openssl")
            .args(["ts", "-reply", "-config"])
            .arg(self.path("tsa.cnf"))
            .arg("-queryfile")
            .arg(&q)
            .arg("-out")
            .arg(&r)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(r).unwrap()
    }

    fn pins(&self, file: &str) -> PinnedCertificates {
        let mut pins = PinnedCertificates::none();
        pins.add_pem(&std::fs::read(self.path(file)).unwrap()).unwrap();
        pins
    }

    /// `openssl ts -reply -text` of a response: (time line, serial line).
    fn openssl_text(&self, response: &[u8]) -> (String, String) {
        let r = self.path("shown.tsr");
        std::fs::write(&r, response).unwrap();
        let out = Command::new("openssl")
            .args(["ts", "-reply", "-text", "-in"])
            .arg(&r)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .trim()
                .to_string()
        };
        (field("Time stamp:"), field("Serial number:"))
    }
}

#[test]
fn an_openssl_token_verifies_and_says_what_openssl_says() {
    let tsa = Tsa::new("ec");
    let response = tsa.reply(&timestamp_request(NOTE, 0x0123_4567_89ab_cdef).unwrap());
    let verdict = verify_response(&response, NOTE, Some(0x0123_4567_89ab_cdef), &tsa.pins("ca.pem")).unwrap();
    let (time, serial) = tsa.openssl_text(&response);
    assert_eq!(
        verdict.gen_time.strftime("%b %e %H:%M:%S %Y GMT").to_string(),
        time
    );
    assert_eq!(format!("0x{}", verdict.serial.to_uppercase()), serial);
    assert_eq!(verdict.signer, "CN=mailvault test TSA");
    assert_eq!(verdict.tsa_name.as_deref(), Some("CN=mailvault test TSA"));
    assert_eq!(verdict.pinned_by.as_deref(), Some("CN=mailvault test TSA CA"));
    assert_eq!(verdict.policy, "1.3.6.1.4.1.99999.1");

    // Pinning the TSA certificate itself works too; no pins: valid, but says so.
    let by_leaf = check_timestamp_file(&response, NOTE, &tsa.pins("tsa.pem")).unwrap();
    assert_eq!(by_leaf.pinned_by.as_deref(), Some("CN=mailvault test TSA"));
    let unpinned = check_timestamp_file(&response, NOTE, &PinnedCertificates::none()).unwrap();
    assert_eq!(unpinned.pinned_by, None);
    assert_eq!(unpinned.gen_time, verdict.gen_time);
}

#[test]
fn an_rsa_tsa_token_verifies() {
    let tsa = Tsa::new("rsa");
    let response = tsa.reply(&timestamp_request(NOTE, 7).unwrap());
    let verdict = verify_response(&response, NOTE, Some(7), &tsa.pins("ca.pem")).unwrap();
    assert_eq!(verdict.pinned_by.as_deref(), Some("CN=mailvault test TSA CA"));
    let mut flipped = response.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // the end of the RSA signature
    assert!(verify_response(&flipped, NOTE, Some(7), &tsa.pins("ca.pem")).is_err());
}

#[test]
fn a_token_of_another_note_or_nonce_is_rejected() {
    let tsa = Tsa::new("ec");
    let response = tsa.reply(&timestamp_request(NOTE, 99).unwrap());
    let other = b"mailvault.example/log\n43\n";
    let err = check_timestamp_file(&response, other, &tsa.pins("ca.pem")).unwrap_err();
    assert!(err.to_string().contains("imprint"), "{err}");
    let err = verify_response(&response, NOTE, Some(100), &tsa.pins("ca.pem")).unwrap_err();
    assert!(err.to_string().contains("nonce"), "{err}");
}

#[test]
fn a_token_under_another_ca_is_rejected_when_pinned() {
    let tsa = Tsa::new("ec");
    let stranger = Tsa::new("ec");
    let response = tsa.reply(&timestamp_request(NOTE, 1).unwrap());
    for pin in ["ca.pem", "tsa.pem"] {
        let err = check_timestamp_file(&response, NOTE, &stranger.pins(pin)).unwrap_err();
        assert!(err.to_string().contains("not pinned"), "{pin}: {err}");
    }
}

#[test]
fn a_refusal_carries_the_tsas_status_text() {
    let tsa = Tsa::new("ec");
    // SHA-1 is not among the digests tsa.cnf accepts: OpenSSL answers with a rejection.
    let note = tsa.path("note.txt");
    std::fs::write(&note, NOTE).unwrap();
    let query = tsa.path("sha1.tsq");
    let status = Command::new("openssl")
        .args(["ts", "-query", "-sha1", "-data"])
        .arg(&note)
        .arg("-out")
        .arg(&query)
        .status()
        .unwrap();
    assert!(status.success());
    let response = tsa.reply(&std::fs::read(&query).unwrap());
    let err = check_timestamp_file(&response, NOTE, &PinnedCertificates::none()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Rejection") && text.contains("not supported"),
        "{text}"
    );
}

/// One changed byte anywhere in a token never leaves a valid token (three different flips of
/// every byte). The one exception is the unsigned response status: 0 (granted) → 1 (granted
/// with modifications) is still a grant of the same signed token.
#[test]
fn every_flipped_byte_of_a_token_is_caught() {
    let tsa = Tsa::new("ec");
    let pins = tsa.pins("ca.pem");
    let response = tsa.reply(&timestamp_request(NOTE, 5).unwrap());
    assert!(check_timestamp_file(&response, NOTE, &pins).is_ok());
    // TimeStampResp ::= SEQUENCE { status SEQUENCE { INTEGER 0 }, …}: the status value's byte.
    let status_byte = 2 + header_len(&response) + 4;
    assert_eq!(&response[status_byte - 2..=status_byte], [0x02, 0x01, 0x00]);
    let mut still_valid = Vec::new();
    for position in 0..response.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut flipped = response.clone();
            flipped[position] ^= mask;
            if check_timestamp_file(&flipped, NOTE, &pins).is_ok() {
                still_valid.push((position, mask));
            }
        }
    }
    assert_eq!(still_valid, [(status_byte, 0x01)]);
}

#[test]
fn hostile_sizes_are_refused_before_parsing() {
    let big = vec![0x30; MAX_RESPONSE_BYTES + 1];
    assert!(matches!(
        check_timestamp_file(&big, NOTE, &PinnedCertificates::none()),
        Err(Error::Malformed { .. })
    ));
    for junk in [
        &b""[..],
        b"\x30",
        b"\x30\x84\xff\xff\xff\xff",
        b"\x30\x03\x30\x01\x02",
    ] {
        assert!(check_timestamp_file(junk, NOTE, &PinnedCertificates::none()).is_err());
    }
    assert!(PinnedCertificates::none().add_pem(b"not a certificate").is_err());
}

/// Length of the outer SEQUENCE's header's length octets beyond the first.
fn header_len(der: &[u8]) -> usize {
    match der[1] {
        n if n < 0x80 => 0,
        n => usize::from(n & 0x7f),
    }
}
