//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo feature `fuzzing`,
//! off by default): the parsers and matchers that take client or mail bytes, reachable
//! without a socket. Not an API: nothing outside `fuzz/` may call these.

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::response::{Data, Response};
use imap_next::imap_types::sequence::SequenceSet;

use archive_core::views::View;

use crate::mime::{header_fields, Parsed, SortFields};

/// Everything FETCH computes from a message's bytes: ENVELOPE and BODYSTRUCTURE (encoded
/// as imap-codec would send them), the SORT/THREAD fields, and the sections at `paths`
/// (HEADER, TEXT, MIME, the part, BINARY, HEADER.FIELDS). Returns the encoded FETCH line.
pub fn mime_structure(raw: &[u8], paths: &[Vec<NonZeroU32>]) -> Vec<u8> {
    let parsed = Parsed::new(raw);
    let items = vec![
        MessageDataItem::Envelope(parsed.envelope()),
        MessageDataItem::BodyStructure(parsed.body_structure()),
        MessageDataItem::Body(parsed.body_structure()),
    ];
    let _ = SortFields::parse(raw, 0, raw.len() as u64);
    for path in paths {
        let _ = parsed
            .header(path)
            .map(|h| header_fields(h, &[b"subject".to_vec()], false));
        let _ = parsed.text(path);
        let _ = parsed.mime(path);
        let _ = parsed.part(path);
        let _ = parsed.binary(path);
    }
    let mut wire = Vec::new();
    if let Ok(items) = Vec1::try_from(items) {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items,
        });
        wire.extend(ResponseCodec::default().encode(&response).dump());
    }
    wire
}

/// Resolves a sequence set written as a client would (`1:*,4,7:5`) against `view`, as
/// FETCH/SEARCH/SORT do, and writes the result back as a compact set. `None` if the text is
/// not a sequence set or the set names nothing in an empty mailbox.
pub fn sequence_set(text: &str, view: &View, uid: bool) -> Option<(Vec<usize>, String)> {
    let set: SequenceSet = text.parse().ok()?;
    // The fuzzed view is small: listing every number is what the target checks.
    let numbers: Vec<usize> = crate::sequence::resolve(&set, view, uid).ok()?.iter().collect();
    let as_u64: Vec<u64> = numbers.iter().map(|n| *n as u64).collect();
    let compact = crate::sequence::compact_set(&as_u64);
    Some((numbers, compact))
}

/// RFC 3501 LIST pattern matching, as LIST and LSUB apply it to each mailbox name.
pub fn list_matches(pattern: &str, name: &str) -> bool {
    crate::command::list_matches(pattern, name)
}
