//! The BDAT command line, read here rather than by smtp-proto: its number parser takes
//! digits past `usize::MAX` as a fresh number (`BDAT 99999999999999999999010 LAST` reads as a
//! 10-octet chunk) and skips CRs inside the number, so the chunk boundary it finds can differ
//! from the client's, and the rest of the "chunk" would run as commands. RFC 3030 §4:
//!
//! ```text
//! bdat-cmd   ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF
//! chunk-size ::= 1*DIGIT
//! end-marker ::= "LAST"
//! ```

/// A BDAT command as read by [`parse`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bdat {
    /// Not a BDAT command: for the general parser.
    Other,
    /// A well-formed BDAT whose chunk fits the limit.
    Chunk { size: usize, last: bool },
    /// A well-formed BDAT whose chunk is larger than the limit (or than any number).
    TooBig,
    /// A BDAT whose chunk size cannot be read: where its chunk ends is unknown.
    Malformed,
}

/// Reads `line` (a complete line, with its line ending) as a BDAT command, `limit` being the
/// largest chunk that can be accepted.
pub(crate) fn parse(line: &[u8], limit: usize) -> Bdat {
    let is_bdat = line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"BDAT")
        && line
            .get(4)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if !is_bdat {
        return Bdat::Other;
    }
    let Some(rest) = line[4..]
        .strip_suffix(b"\r\n")
        .or_else(|| line[4..].strip_suffix(b"\n"))
    else {
        return Bdat::Malformed;
    };
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Bdat::Malformed;
    };
    let (size, marker) = match rest.iter().position(|&b| b == b' ') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let last = match marker {
        None => false,
        Some(m) if m.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Bdat::Malformed,
    };
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Bdat::Malformed;
    }
    // Leading zeros are digits too: skip them, and any number with more digits than the
    // limit has is over it, whatever it says.
    let significant = match size.iter().position(|&b| b != b'0') {
        Some(at) => &size[at..],
        None => return Bdat::Chunk { size: 0, last },
    };
    let mut value: usize = 0;
    for &digit in significant {
        value = match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(digit - b'0')))
        {
            Some(v) if v <= limit => v,
            _ => return Bdat::TooBig,
        };
    }
    Bdat::Chunk { size: value, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_decimal_sizes_within_the_limit_are_chunks() {
        let chunk = |size, last| Bdat::Chunk { size, last };
        assert_eq!(parse(b"BDAT 10\r\n", 100), chunk(10, false));
        assert_eq!(parse(b"bdat 10 last\r\n", 100), chunk(10, true));
        assert_eq!(parse(b"BDAT 0 LAST\n", 100), chunk(0, true));
        assert_eq!(
            parse(b"BDAT 0000000000000000000000042\r\n", 100),
            chunk(42, false)
        );
        assert_eq!(parse(b"BDAT 100\r\n", 100), chunk(100, false));
        assert_eq!(parse(b"BDAT 101\r\n", 100), Bdat::TooBig);
        assert_eq!(
            parse(b"BDAT 99999999999999999999010 LAST\r\n", usize::MAX),
            Bdat::TooBig
        );
        assert_eq!(parse(b"BDAT 18446744073709551616\r\n", usize::MAX), Bdat::TooBig);
        for bad in [
            &b"BDAT\r\n"[..],
            b"BDAT \r\n",
            b"BDAT +10\r\n",
            b"BDAT -1\r\n",
            b"BDAT 0x10\r\n",
            b"BDAT 1\r0 LAST\r\n",
            b"BDAT  10\r\n",
            b"BDAT 10  LAST\r\n",
            b"BDAT 10 LAST \r\n",
            b"BDAT 10 LASTLY\r\n",
            b"BDAT 1 0\r\n",
            b"BDAT\t10\r\n",
            b"BDAT 10",
        ] {
            assert_eq!(
                parse(bad, 100),
                Bdat::Malformed,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(b"BDATX 10\r\n", 100), Bdat::Other);
        assert_eq!(parse(b"DATA\r\n", 100), Bdat::Other);
    }
}
