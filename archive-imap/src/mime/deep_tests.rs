//! Messages built to exhaust the stack: deeply nested multiparts and messages, and a
//! message/rfc822 part whose encoded content nests further. Each runs on a thread with a
//! small stack, so a recursion on the depth fails the test (the process aborts) instead of
//! passing on a big main-thread stack.

use std::num::NonZeroU32;

use base64::Engine;
use imap_next::imap_types::body::{BodyStructure, SpecificFields};

use super::{Parsed, MAX_MIME_DEPTH};

/// Stack of the threads the tests run on: what a tokio blocking thread has by default.
const STACK: usize = 2 << 20;

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic");
}

/// `depth` multipart/mixed parts, each the only part of the one around it, around one
/// text part.
pub(crate) fn nested_multiparts(depth: usize) -> Vec<u8> {
    let mut s = String::from("From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n");
    for i in 0..depth {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nleaf\r\n");
    for i in (0..depth).rev() {
        s.push_str(&format!("--b{i}--\r\n"));
    }
    s.into_bytes()
}

/// `depth` message/rfc822 parts, each inside the one before.
fn nested_messages(depth: usize) -> Vec<u8> {
    let mut s = String::from("From: a@example.com\r\nSubject: deep\r\n");
    for _ in 0..depth {
        s.push_str("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
    }
    s.push_str("\r\nleaf\r\n");
    s.into_bytes()
}

/// How deep a body structure nests (1: a single part), counted without recursion.
fn structure_depth(b: &BodyStructure<'_>) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(b, 1)];
    while let Some((b, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match b {
            BodyStructure::Multi { bodies, .. } => {
                pending.extend(bodies.as_ref().iter().map(|c| (c, depth + 1)));
            }
            BodyStructure::Single { body, .. } => {
                if let SpecificFields::Message { body_structure, .. } = &body.specific {
                    pending.push((body_structure, depth + 1));
                }
            }
        }
    }
    deepest
}

/// The innermost body structure along first parts.
fn innermost<'b>(mut b: &'b BodyStructure<'static>) -> &'b BodyStructure<'static> {
    loop {
        match b {
            BodyStructure::Multi { bodies, .. } => b = &bodies.as_ref()[0],
            BodyStructure::Single { body, .. } => match &body.specific {
                SpecificFields::Message { body_structure, .. } => b = body_structure,
                _ => return b,
            },
        }
    }
}

fn ones(n: usize) -> Vec<NonZeroU32> {
    vec![NonZeroU32::MIN; n]
}

#[test]
fn multiparts_deeper_than_the_limit_end_in_a_leaf_with_exact_bytes() {
    for depth in [MAX_MIME_DEPTH - 1, MAX_MIME_DEPTH, 2_000, 20_000] {
        on_small_stack(move || {
            let raw = nested_multiparts(depth);
            let p = Parsed::new(&raw);
            let structure = p.body_structure();
            // The top-level multipart is depth 0; parts 1 … MAX deep.
            let levels = structure_depth(&structure);
            assert_eq!(levels, (depth + 1).min(MAX_MIME_DEPTH + 1), "depth {depth}");
            let leaf = innermost(&structure);
            let path = ones(levels - 1);
            let bytes = p.part(&path).expect("the innermost described part");
            let BodyStructure::Single { body, .. } = leaf else {
                panic!("a leaf is a single part");
            };
            assert_eq!(body.basic.size as usize, bytes.len(), "depth {depth}");
            if depth > MAX_MIME_DEPTH {
                assert!(matches!(
                    &body.specific,
                    SpecificFields::Basic { r#type, subtype }
                        if r#type.as_ref() == b"application" && subtype.as_ref() == b"octet-stream"
                ));
                // The leaf holds the rest of the nesting, byte for byte.
                assert!(bytes.starts_with(b"--b100\r\n"), "{:?}", &bytes[..20]);
                assert!(bytes.ends_with(b"--b100--"));
                assert_eq!(p.part(&ones(levels)), None);
                assert_eq!(p.mime(&ones(levels)), None);
            } else {
                assert_eq!(bytes, b"leaf");
            }
            let _ = p.envelope();
        });
    }
}

#[test]
fn deeply_nested_messages_are_parsed_described_and_dropped_without_recursion() {
    on_small_stack(|| {
        let raw = nested_messages(30_000);
        let p = Parsed::new(&raw);
        let structure = p.body_structure();
        assert_eq!(structure_depth(&structure), MAX_MIME_DEPTH + 1);
        // Message parts below the limit still have HEADER and TEXT; at it, none.
        let below = ones(MAX_MIME_DEPTH - 1);
        assert_eq!(
            p.header(&below),
            Some(&b"Subject: inner\r\nContent-Type: message/rfc822\r\n\r\n"[..])
        );
        assert_eq!(p.header(&ones(MAX_MIME_DEPTH + 1)), None);
        drop(p);
    });
}

#[test]
fn an_encoded_message_part_is_a_leaf_and_is_never_parsed_inside() {
    on_small_stack(|| {
        let inner = nested_messages(20_000);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&inner);
        let mut raw = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        for line in encoded.as_bytes().chunks(76) {
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"--x--\r\n");
        let p = Parsed::new(&raw);
        let structure = p.body_structure();
        assert_eq!(structure_depth(&structure), 2);
        // Part 2 is described as a leaf, not parsed as the message it encodes. (How far its
        // bytes reach is mail-parser's reading of base64 lines as a header block: RFC 2046
        // forbids encoding message/rfc822, and the structure of such mail may be degraded
        // after the part; the stored bytes never are.)
        let two = [NonZeroU32::MIN.saturating_add(1)];
        assert_eq!(p.header(&two), None);
        assert_eq!(p.part(&[]), Some(&raw[..]));
        assert_eq!(p.part(&ones(1)), Some(&b"see attached"[..]));
    });
}

/// How many parts a body structure describes, counted without recursion.
fn structure_parts(b: &BodyStructure<'_>) -> usize {
    let mut parts = 0;
    let mut pending = vec![b];
    while let Some(b) = pending.pop() {
        parts += 1;
        match b {
            BodyStructure::Multi { bodies, .. } => pending.extend(bodies.as_ref().iter()),
            BodyStructure::Single { body, .. } => {
                if let SpecificFields::Message { body_structure, .. } = &body.specific {
                    pending.push(body_structure);
                }
            }
        }
    }
    parts
}

/// A 12 KB message found by the fuzzer (fuzz/regressions/mime_structure): eight nested
/// message/rfc822 parts whose multiparts share boundaries, which mail-parser hands back as
/// parts of every enclosing message. Described part by part, its BODYSTRUCTURE ran to
/// gigabytes; the part budget stops it after `MAX_MIME_PARTS` containers.
#[test]
fn overlapping_nested_messages_describe_a_bounded_number_of_parts() {
    on_small_stack(|| {
        let raw = include_bytes!("../../../fuzz/regressions/mime_structure/overlapping-nested-messages");
        let parsed = Parsed::new(raw);
        // Containers stop at the budget; the parts already listed by the last of them are
        // still described, as leaves.
        let parts = structure_parts(&parsed.body_structure());
        assert!(parts <= 2 * super::MAX_MIME_PARTS, "{parts} parts");
    });
}
