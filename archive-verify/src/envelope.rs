//! The SMTP envelope of a delivery, and its canonical byte encoding (docs/FORMAT.md §Envelope).
//!
//! Blind-copy recipients exist only here, so the envelope is part of every hashed leaf.
//! Addresses are kept as bytes: SMTPUTF8 and broken relays deliver addresses that are not
//! ASCII and not always UTF-8, and the archive keeps what it was given.

use crate::{Error, Result};

/// Encoding version written as the first byte of every encoded envelope.
const ENVELOPE_VERSION: u8 = 1;

/// One `RCPT TO` of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The address as given in `RCPT TO:<…>`, without the angle brackets.
    pub address: Vec<u8>,
    /// The ESMTP parameters after the address (e.g. `NOTIFY=NEVER ORCPT=rfc822;a@b`), verbatim.
    pub params: Vec<u8>,
}

/// Everything known about how a message reached the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `MAIL FROM` address without angle brackets; empty for the null sender `<>`.
    pub mail_from: Vec<u8>,
    /// ESMTP parameters of `MAIL FROM` (e.g. `BODY=8BITMIME SIZE=1234`), verbatim.
    pub mail_params: Vec<u8>,
    /// Every `RCPT TO` in the order received.
    pub rcpt_to: Vec<Recipient>,
    /// The original recipients when the journaling style encodes them (recipient-encoded
    /// copies, Exchange journal reports); empty when `rcpt_to` already are the recipients.
    pub original_recipients: Vec<Vec<u8>>,
    /// How it arrived: `smtp`, `esmtp`, `lmtp`, `import`, … (free text, for people).
    pub protocol: String,
    /// Peer address of the client as `ip:port`; empty for imports.
    pub client: String,
    /// The HELO/EHLO/LHLO name the client gave.
    pub helo: String,
    /// TLS protocol and cipher suite (`TLSv1.3 TLS_AES_128_GCM_SHA256`), empty for plain text.
    pub tls: String,
    /// Where an imported message came from (file path, `mbox#index`), empty for intake.
    pub source: String,
}

impl Envelope {
    /// An envelope for a message imported from a file rather than received over SMTP.
    pub fn imported(source: impl Into<String>, mail_from: &[u8]) -> Self {
        Envelope {
            mail_from: mail_from.to_vec(),
            protocol: "import".into(),
            source: source.into(),
            ..Envelope::default()
        }
    }

    /// An LMTP delivery from `mail_from` to `rcpt_to`, without parameters (tests, benchmarks
    /// and tools that hand-build deliveries).
    pub fn lmtp<S: AsRef<str>>(mail_from: &str, rcpt_to: &[S]) -> Self {
        Envelope {
            mail_from: mail_from.as_bytes().to_vec(),
            rcpt_to: rcpt_to
                .iter()
                .map(|a| Recipient {
                    address: a.as_ref().as_bytes().to_vec(),
                    params: Vec::new(),
                })
                .collect(),
            protocol: "lmtp".into(),
            ..Envelope::default()
        }
    }

    /// The addresses this delivery was for: the decoded originals when journaling encoded
    /// them, otherwise the `RCPT TO` addresses.
    pub fn recipients(&self) -> Vec<&[u8]> {
        if self.original_recipients.is_empty() {
            self.rcpt_to.iter().map(|r| r.address.as_slice()).collect()
        } else {
            self.original_recipients.iter().map(Vec::as_slice).collect()
        }
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(ENVELOPE_VERSION);
        put_bytes(out, &self.mail_from);
        put_bytes(out, &self.mail_params);
        put_u32(out, self.rcpt_to.len());
        for r in &self.rcpt_to {
            put_bytes(out, &r.address);
            put_bytes(out, &r.params);
        }
        put_u32(out, self.original_recipients.len());
        for r in &self.original_recipients {
            put_bytes(out, r);
        }
        for text in [&self.protocol, &self.client, &self.helo, &self.tls, &self.source] {
            put_bytes(out, text.as_bytes());
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Decodes a canonical encoding that must span all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Envelope> {
        let mut r = Cursor::new("envelope", bytes);
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(r.malformed(format!(
                "encoding version {version} is not supported (expected {ENVELOPE_VERSION})"
            )));
        }
        let mail_from = r.bytes()?.to_vec();
        let mail_params = r.bytes()?.to_vec();
        let mut rcpt_to = Vec::new();
        for _ in 0..r.u32()? {
            let address = r.bytes()?.to_vec();
            let params = r.bytes()?.to_vec();
            rcpt_to.push(Recipient { address, params });
        }
        let mut original_recipients = Vec::new();
        for _ in 0..r.u32()? {
            original_recipients.push(r.bytes()?.to_vec());
        }
        let env = Envelope {
            mail_from,
            mail_params,
            rcpt_to,
            original_recipients,
            protocol: r.text()?,
            client: r.text()?,
            helo: r.text()?,
            tls: r.text()?,
            source: r.text()?,
        };
        if r.pos != bytes.len() {
            return Err(r.malformed(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(env)
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths are bounded by the frame length (u32), so this cannot truncate for a valid record.
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

/// A bounds-checked big-endian reader over a byte slice.
pub struct Cursor<'a> {
    /// The encoding being read, for errors ("envelope", "leaf").
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Cursor { what, bytes, pos: 0 }
    }

    /// An error about the encoding being read.
    pub fn malformed(&self, reason: String) -> Error {
        Error::Malformed {
            what: self.what,
            reason,
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                self.malformed(format!(
                    "truncated: need {n} bytes at offset {}, have {}",
                    self.pos,
                    self.bytes.len() - self.pos
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    pub fn hash(&mut self) -> Result<[u8; 32]> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A length-prefixed field that must be UTF-8.
    pub fn text(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| self.malformed("a text field is not UTF-8".into()))
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let env = Envelope {
            mail_from: b"sender@example.com".to_vec(),
            mail_params: b"BODY=8BITMIME".to_vec(),
            rcpt_to: vec![
                Recipient {
                    address: b"a@example.com".to_vec(),
                    params: vec![],
                },
                Recipient {
                    address: "bü@例え.jp".as_bytes().to_vec(),
                    params: b"NOTIFY=NEVER".to_vec(),
                },
            ],
            original_recipients: vec![b"x@y.z".to_vec()],
            protocol: "lmtp".into(),
            client: "127.0.0.1:4000".into(),
            helo: "relay.example.com".into(),
            tls: "TLSv1.3 TLS_AES_128_GCM_SHA256".into(),
            source: String::new(),
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        assert_eq!(env.recipients(), vec![b"x@y.z".as_slice()]);
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let bytes = Envelope::imported("a.eml", b"s@x").encode();
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Envelope::decode(&longer).is_err());
    }
}
