//! A message in the browser: its page, the integrity panel, downloads, language, logout.

use base64::Engine;

use super::search::INVOICE;
use super::{run_flow, site};
use crate::util::sha256_hex;

/// A reply to the invoice with an HTML part that has a remote image and a link.
const REPLY: &str = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\n\
Subject: Re: invoice 42 for June\r\nDate: Thu, 02 Jul 2026 08:00:00 +0000\r\nMessage-ID: <reply-42@example.com>\r\n\
In-Reply-To: <invoice-42@example.org>\r\nReferences: <invoice-42@example.org>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\n\
Thanks, paid.\r\n--a\r\nContent-Type: text/html\r\n\r\n\
<html><body><p>Thanks, <b>paid</b>.</p><img src=\"http://images.example.net/logo.png\" alt=\"logo\">\
<p><a id=\"receipt\" href=\"https://pay.example.net/receipt?id=42\">receipt</a></p></body></html>\r\n--a--\r\n";

/// The invoice's page (headers, body, attachment, thread, integrity "verified"), its raw
/// download byte for byte equal to `mailvault show`, the attachment's decoded bytes, proof and
/// checkpoint; the reply's HTML in a sandboxed frame with its remote image blocked and noted
/// (and never fetched); German by the switch, sticking on other pages, English again; logout.
#[test]
fn message_downloads_language_logout() {
    let site = site(&[
        ("invoice.eml".into(), INVOICE.as_bytes().to_vec()),
        ("reply.eml".into(), REPLY.as_bytes().to_vec()),
    ]);
    let seq = site.seq("invoice.eml").to_string();
    let raw = site.vault.ok(&["show", &seq]);
    assert_eq!(raw, INVOICE.as_bytes(), "show prints the bytes as imported");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode("JVBERi0xLjQKJSVFT0YK")
        .unwrap();
    let mut env = site.as_user("alice");
    env.extend([
        ("SEQ", seq.clone()),
        ("REPLY_SEQ", site.seq("reply.eml").to_string()),
        ("RAW_SHA256", sha256_hex(&raw)),
        ("ATTACHMENT_NAME", "invoice-42.pdf".into()),
        ("ATTACHMENT_SHA256", sha256_hex(&pdf)),
    ]);
    let result = run_flow("message", &site.base_url, &env);
    result.require(&[
        "message.headers_from",
        "message.integrity_verified",
        "message.integrity_says_verified",
        "message.attachment_listed",
        "message.thread_links_reply",
        "message.raw_bytes_equal_show",
        "message.raw_is_eml",
        "message.attachment_name",
        "message.attachment_bytes",
        "message.proof-download",
        "message.checkpoint-download",
        "message.html_iframe_sandboxed",
        "message.remote_images_note",
        "message.html_rendered",
        "message.lang_de",
        "message.integrity_verifiziert",
        "message.lang_de_sticks",
        "message.lang_cookie",
        "message.lang_en_again",
        "message.lang_en_sticks",
        "message.logout",
        "message.raw_after_logout_refused",
        "message.no_outside_request",
    ]);
}
