//! RFC 3161 time-stamps of checkpoints: the request the archive sends a time-stamping
//! authority (TSA), and the offline check of the answer it keeps.
//!
//! What is stamped is the SHA-256 of a checkpoint note's bytes (docs/FORMAT.md, "Time-stamp
//! tokens"). A token shows that this note — and so the tree it commits to — existed at the
//! TSA's `genTime`. The check is the whole of RFC 3161 §2.4.2 and RFC 5652 §5.4–5.6 that a
//! token needs: the response status; a CMS SignedData whose content is a TSTInfo; the imprint
//! (SHA-256, of these bytes); the nonce when the caller sent one; the signed attributes
//! (content type, message digest of the TSTInfo); the signature over them with the signer
//! certificate's key (ECDSA P-256 or RSA PKCS#1 v1.5, both with SHA-256); that certificate's
//! critical extended key usage `timeStamping` and its validity at `genTime`; and, with pins,
//! that the signer certificate is a pinned certificate or is signed by one (one level: a
//! pinned CA that issued the TSA certificate directly — no longer chains, no revocation).
//!
//! Input is hostile: it is bounded to [`MAX_RESPONSE_BYTES`] before parsing, the `der` crate
//! bounds every length and nesting, and nothing here recurses on input.

use cmpv2::status::PkiStatus;
use cms::cert::CertificateChoices;
use cms::content_info::CmsVersion;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::{Int, Null, OctetString};
use der::{Any, Decode, Encode, Tag, Tagged};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::Certificate;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::{Error, Result};

/// The largest response (or stored token file) read; real ones are 2–8 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

const ID_SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ECDSA_WITH_SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA_256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// Certificates a token must lead to: each is either the TSA's own signing certificate or the
/// CA certificate that issued it.
#[derive(Clone, Debug, Default)]
pub struct PinnedCertificates {
    certs: Vec<Certificate>,
}

impl PinnedCertificates {
    /// No pins: tokens are checked for internal validity only.
    pub fn none() -> Self {
        PinnedCertificates::default()
    }

    /// Adds every certificate of a PEM file (one or more `CERTIFICATE` blocks).
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<()> {
        let certs = Certificate::load_pem_chain(pem).map_err(|e| malformed("PEM certificate", e))?;
        if certs.is_empty() {
            return Err(Error::Malformed {
                what: "PEM certificate",
                reason: "no CERTIFICATE block".into(),
            });
        }
        self.certs.extend(certs);
        Ok(())
    }

    /// True when no certificate is pinned.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampVerdict {
    /// The TSA's time (`genTime`), to the second.
    pub gen_time: jiff::Timestamp,
    /// The token's serial number, hex.
    pub serial: String,
    /// The TSA's name from the token (`tsa` field), when present.
    pub tsa_name: Option<String>,
    /// Subject of the certificate that signed the token.
    pub signer: String,
    /// The TSA policy the token was issued under.
    pub policy: String,
    /// Subject of the pinned certificate the signer is (or was issued by); `None`: no pins
    /// were given, the token is only internally valid.
    pub pinned_by: Option<String>,
}

/// A DER `TimeStampReq` for the SHA-256 of `note`, asking for the signer certificate
/// (`certReq`), carrying `nonce` (the caller picks it at random, and checks it in the answer).
pub fn timestamp_request(note: &[u8], nonce: u64) -> Result<Vec<u8>> {
    let request = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: sha256_imprint(note),
        req_policy: None,
        nonce: Some(nonce_int(nonce)?),
        cert_req: true,
        extensions: None,
    };
    request.to_der().map_err(|e| malformed("TimeStampReq", e))
}

/// Checks a DER `TimeStampResp` a TSA returned for `note` (see the module comment), with the
/// nonce of the request when the caller knows it.
pub fn verify_response(
    response: &[u8],
    note: &[u8],
    nonce: Option<u64>,
    pins: &PinnedCertificates,
) -> Result<TimestampVerdict> {
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(Error::Malformed {
            what: "TimeStampResp",
            reason: format!(
                "{} bytes, more than the {MAX_RESPONSE_BYTES} allowed",
                response.len()
            ),
        });
    }
    let response = TimeStampResp::from_der(response).map_err(|e| malformed("TimeStampResp", e))?;
    match response.status.status {
        PkiStatus::Accepted | PkiStatus::GrantedWithMods => {}
        refused => {
            let text: Vec<&str> = response
                .status
                .status_string
                .iter()
                .flatten()
                .map(|s| s.as_str())
                .collect();
            return Err(Error::Verification(format!(
                "the TSA did not grant the time-stamp: status {refused:?}{}{}",
                if text.is_empty() { "" } else { ": " },
                text.join("; ")
            )));
        }
    }
    let token = response
        .time_stamp_token
        .ok_or_else(|| Error::Verification("the TSA granted the request but sent no token".into()))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(verification(format!(
            "the token is a {}, not a CMS SignedData",
            token.content_type
        )));
    }
    let signed: SignedData = token
        .content
        .decode_as()
        .map_err(|e| malformed("SignedData", e))?;
    verify_signed_data(&signed, note, nonce, pins)
}

/// The check of a stored `timestamp-<tsa>.tsr` file (a DER `TimeStampResp`) against the
/// `checkpoint.txt` beside it; for `mailvault verify` and the bundle checker.
pub fn check_timestamp_file(
    token_der: &[u8],
    checkpoint_txt: &[u8],
    pins: &PinnedCertificates,
) -> Result<TimestampVerdict> {
    verify_response(token_der, checkpoint_txt, None, pins)
}

fn verify_signed_data(
    signed: &SignedData,
    note: &[u8],
    nonce: Option<u64>,
    pins: &PinnedCertificates,
) -> Result<TimestampVerdict> {
    // Fields outside the signature are pinned to the one value a TSTInfo token has, so that no
    // byte of a token can change without the check noticing.
    if signed.version != CmsVersion::V3 {
        return Err(verification("SignedData version is not 3".into()));
    }
    let info = only_one(signed.signer_infos.0.iter(), "SignerInfo")?;
    if !is_sha256(&info.digest_alg) {
        return Err(verification(
            "the signer's digest algorithm is not SHA-256".into(),
        ));
    }
    let digests: Vec<_> = signed.digest_algorithms.iter().collect();
    if digests != [&info.digest_alg] {
        return Err(verification(
            "SignedData digest algorithms are not exactly SHA-256".into(),
        ));
    }
    let encap = &signed.encap_content_info;
    if encap.econtent_type != ID_CT_TST_INFO {
        return Err(verification(format!(
            "the signed content is {}, not a TSTInfo",
            encap.econtent_type
        )));
    }
    let content = encap
        .econtent
        .as_ref()
        .ok_or_else(|| verification("the token has no TSTInfo".into()))?;
    if content.tag() != Tag::OctetString {
        return Err(verification("the TSTInfo is not in an OCTET STRING".into()));
    }
    let tst_der = content.value();
    let tst = TstInfo::from_der(tst_der).map_err(|e| malformed("TSTInfo", e))?;

    let imprint = &tst.message_imprint;
    if !is_sha256(&imprint.hash_algorithm) {
        return Err(verification("the token's message imprint is not SHA-256".into()));
    }
    if imprint.hashed_message.as_bytes() != Sha256::digest(note).as_slice() {
        return Err(verification(
            "the token stamps another document: its imprint is not the SHA-256 of this checkpoint".into(),
        ));
    }
    if let Some(nonce) = nonce {
        if tst.nonce.as_ref() != Some(&nonce_int(nonce)?) {
            return Err(verification("the token's nonce is not the request's".into()));
        }
    }

    let signed_attrs = check_signed_attributes(info, tst_der)?;
    let signer = signer_certificate(signed, info, pins)?;
    check_signature(
        &signer.tbs_certificate.subject_public_key_info,
        &info.signature_algorithm,
        &signed_attrs,
        info.signature.as_bytes(),
    )
    .map_err(|e| verification(format!("the token's signature does not verify: {e}")))?;
    check_time_stamping_usage(signer)?;

    let gen_secs = tst.gen_time.to_unix_duration().as_secs();
    let validity = &signer.tbs_certificate.validity;
    if gen_secs < validity.not_before.to_unix_duration().as_secs()
        || gen_secs > validity.not_after.to_unix_duration().as_secs()
    {
        return Err(verification(
            "the token's time lies outside the validity of the TSA certificate".into(),
        ));
    }
    let pinned_by = if pins.is_empty() {
        None
    } else {
        Some(pinned_by(signer, pins)?)
    };
    let gen_time = i64::try_from(gen_secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .ok_or_else(|| verification("the token's time is out of range".into()))?;
    Ok(TimestampVerdict {
        gen_time,
        serial: hex(tst.serial_number.as_bytes()),
        tsa_name: tst.tsa.as_ref().map(general_name),
        signer: signer.tbs_certificate.subject.to_string(),
        policy: tst.policy.to_string(),
        pinned_by,
    })
}

/// Checks the content-type and message-digest attributes; returns the DER (as a SET OF, the
/// form RFC 5652 §5.4 signs) of the signed attributes.
fn check_signed_attributes(info: &SignerInfo, tst_der: &[u8]) -> Result<Vec<u8>> {
    let attrs = info
        .signed_attrs
        .as_ref()
        .ok_or_else(|| verification("the token's signature has no signed attributes".into()))?;
    let content_type = only_one(
        attrs.iter().filter(|a| a.oid == ID_CONTENT_TYPE),
        "content-type attribute",
    )?;
    let value = only_one(content_type.values.iter(), "content-type value")?;
    let oid: ObjectIdentifier = value
        .decode_as()
        .map_err(|e| malformed("content-type attribute", e))?;
    if oid != ID_CT_TST_INFO {
        return Err(verification(
            "the signed content-type attribute is not TSTInfo".into(),
        ));
    }
    let digest = only_one(
        attrs.iter().filter(|a| a.oid == ID_MESSAGE_DIGEST),
        "message-digest attribute",
    )?;
    let value = only_one(digest.values.iter(), "message-digest value")?;
    let digest: OctetString = value
        .decode_as()
        .map_err(|e| malformed("message-digest attribute", e))?;
    if digest.as_bytes() != Sha256::digest(tst_der).as_slice() {
        return Err(verification(
            "the signed message digest is not the SHA-256 of the TSTInfo".into(),
        ));
    }
    attrs.to_der().map_err(|e| malformed("signed attributes", e))
}

/// The certificate the SignerIdentifier names, from the token's certificates or the pins.
fn signer_certificate<'a>(
    signed: &'a SignedData,
    info: &SignerInfo,
    pins: &'a PinnedCertificates,
) -> Result<&'a Certificate> {
    let in_token = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(cert) => Some(cert),
            CertificateChoices::Other(_) => None,
        });
    let mut candidates = in_token.chain(pins.certs.iter());
    let expected_version = match &info.sid {
        SignerIdentifier::IssuerAndSerialNumber(_) => CmsVersion::V1,
        SignerIdentifier::SubjectKeyIdentifier(_) => CmsVersion::V3,
    };
    if info.version != expected_version {
        return Err(verification(
            "the SignerInfo version does not match its identifier".into(),
        ));
    }
    candidates
        .find(|cert| match &info.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                cert.tbs_certificate.issuer == id.issuer
                    && cert.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(id) => {
                extension::<SubjectKeyIdentifier>(cert, ID_CE_SUBJECT_KEY_IDENTIFIER)
                    .ok()
                    .flatten()
                    .is_some_and(|(_, key_id)| key_id == *id)
            }
        })
        .ok_or_else(|| {
            verification("the token's signer certificate is neither in the token nor pinned".into())
        })
}

/// RFC 3161 §2.3: the TSA certificate's extended key usage is exactly `timeStamping`, critical.
fn check_time_stamping_usage(cert: &Certificate) -> Result<()> {
    match extension::<ExtendedKeyUsage>(cert, ID_CE_EXT_KEY_USAGE)? {
        Some((true, usage)) if usage.0 == [ID_KP_TIME_STAMPING] => Ok(()),
        Some((false, _)) => Err(verification(
            "the TSA certificate's extended key usage is not critical".into(),
        )),
        _ => Err(verification(
            "the TSA certificate's extended key usage is not exactly timeStamping".into(),
        )),
    }
}

/// The subject of the pin that vouches for `signer`: the same certificate, or its issuer
/// whose key signed it.
fn pinned_by(signer: &Certificate, pins: &PinnedCertificates) -> Result<String> {
    if let Some(pin) = pins.certs.iter().find(|pin| *pin == signer) {
        return Ok(pin.tbs_certificate.subject.to_string());
    }
    let tbs = signer
        .tbs_certificate
        .to_der()
        .map_err(|e| malformed("TSA certificate", e))?;
    let signature = signer
        .signature
        .as_bytes()
        .ok_or_else(|| verification("the TSA certificate's signature is not whole bytes".into()))?;
    pins.certs
        .iter()
        .filter(|pin| pin.tbs_certificate.subject == signer.tbs_certificate.issuer)
        .find(|pin| {
            check_signature(
                &pin.tbs_certificate.subject_public_key_info,
                &signer.signature_algorithm,
                &tbs,
                signature,
            )
            .is_ok()
        })
        .map(|pin| pin.tbs_certificate.subject.to_string())
        .ok_or_else(|| {
            verification(format!(
                "the TSA certificate ({}) is not pinned and no pinned certificate issued it",
                signer.tbs_certificate.subject
            ))
        })
}

/// Verifies `signature` over `message` with `key`: ECDSA P-256 or RSA PKCS#1 v1.5, SHA-256.
fn check_signature(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    use spki::DecodePublicKey;
    let key_der = key.to_der().map_err(|e| e.to_string())?;
    let oid = algorithm.oid;
    if oid == ECDSA_WITH_SHA_256 && algorithm.parameters.is_none() {
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&key_der)
            .map_err(|e| format!("not an EC P-256 key: {e}"))?;
        let signature = p256::ecdsa::Signature::from_der(signature).map_err(|e| e.to_string())?;
        key.verify(message, &signature).map_err(|e| e.to_string())
    } else if (oid == SHA_256_WITH_RSA || oid == RSA_ENCRYPTION) && null_or_absent(algorithm) {
        let key =
            rsa::RsaPublicKey::from_public_key_der(&key_der).map_err(|e| format!("not an RSA key: {e}"))?;
        let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
        let signature = rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| e.to_string())?;
        key.verify(message, &signature).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "signature algorithm {oid} is not supported (ECDSA P-256 or RSA, with SHA-256)"
        ))
    }
}

/// An extension of `cert` decoded as `T`, with its critical flag; an extension present twice
/// is an error (RFC 5280 §4.2).
fn extension<'a, T: Decode<'a>>(cert: &'a Certificate, oid: ObjectIdentifier) -> Result<Option<(bool, T)>> {
    let mut found = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == oid);
    let Some(ext) = found.next() else { return Ok(None) };
    if found.next().is_some() {
        return Err(verification(format!("the certificate has extension {oid} twice")));
    }
    let value = T::from_der(ext.extn_value.as_bytes()).map_err(|e| malformed("certificate extension", e))?;
    Ok(Some((ext.critical, value)))
}

fn sha256_imprint(data: &[u8]) -> MessageImprint {
    MessageImprint {
        hash_algorithm: spki::AlgorithmIdentifier {
            oid: ID_SHA_256,
            parameters: Some(Any::from(Null)),
        },
        // A 32-byte string is always within der's limits.
        hashed_message: OctetString::new(Sha256::digest(data).to_vec()).unwrap_or_else(|_| unreachable!()),
    }
}

/// SHA-256 with parameters absent or NULL (both are seen; RFC 5754 §2).
fn is_sha256<P: Tagged>(algorithm: &spki::AlgorithmIdentifier<P>) -> bool {
    algorithm.oid == ID_SHA_256 && algorithm.parameters.as_ref().is_none_or(|p| p.tag() == Tag::Null)
}

fn null_or_absent(algorithm: &AlgorithmIdentifierOwned) -> bool {
    algorithm
        .parameters
        .as_ref()
        .is_none_or(|p| p.tag() == Tag::Null && p.value().is_empty())
}

/// The nonce as a DER INTEGER (the encoding of a u64 is always valid).
fn nonce_int(nonce: u64) -> Result<Int> {
    let der = nonce.to_der().map_err(|e| malformed("nonce", e))?;
    Int::from_der(&der).map_err(|e| malformed("nonce", e))
}

fn only_one<T>(mut items: impl Iterator<Item = T>, what: &str) -> Result<T> {
    match (items.next(), items.next()) {
        (Some(item), None) => Ok(item),
        (None, _) => Err(verification(format!("the token has no {what}"))),
        (Some(_), Some(_)) => Err(verification(format!("the token has more than one {what}"))),
    }
}

fn general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::DirectoryName(name) => name.to_string(),
        GeneralName::DnsName(s) | GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => {
            s.to_string()
        }
        _ => "(a name form other than directory, DNS, e-mail or URI)".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn malformed(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Malformed {
        what,
        reason: e.to_string(),
    }
}

fn verification(reason: String) -> Error {
    Error::Verification(reason)
}

#[cfg(test)]
mod tests;
