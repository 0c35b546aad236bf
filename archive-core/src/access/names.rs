//! What a user name, a mail address and a domain may look like. Everything is stored lower
//! case, so logins and scope checks compare plain strings.

use crate::{Error, Result};

/// Longest user name or address, in bytes (RFC 5321's limit for a forward path's address).
pub const MAX_NAME_BYTES: usize = 254;

/// A user name: 1–254 of `a-z 0-9 . _ @ + -`, starting with a letter or digit; upper case is
/// folded. Returns the stored (lower-case) form.
pub fn normalize_user_name(name: &str) -> Result<String> {
    let lower = name.to_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._@+-".contains(c);
    let starts_well = lower.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if lower.is_empty() || lower.len() > MAX_NAME_BYTES || !starts_well || !lower.chars().all(allowed) {
        return Err(Error::Rejected(format!(
            "user name {:?}: use 1-{MAX_NAME_BYTES} of a-z 0-9 . _ @ + -, starting with a letter or digit",
            shorten(name)
        )));
    }
    Ok(lower)
}

/// A mail address as `local@domain` (no display name, no angle brackets, no quoted local
/// part). Returns the stored (lower-case) form.
pub fn normalize_address(address: &str) -> Result<String> {
    let lower = address.trim().to_lowercase();
    let bad = |why: &str| Error::Rejected(format!("address {:?}: {why}", shorten(address)));
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return Err(bad("not a mail address (expected local@domain)"));
    };
    if lower.len() > MAX_NAME_BYTES {
        return Err(bad("longer than 254 bytes"));
    }
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before @ must be 1-64 bytes"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("the part before @ has a misplaced dot"));
    }
    if let Some(c) = local
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(*c))
    {
        return Err(bad(&format!("{c:?} is not allowed before @")));
    }
    check_domain(domain).map_err(|why| bad(&why))?;
    Ok(lower)
}

/// A domain (`example.com`; a leading `@` and a trailing dot are dropped). Returns the stored
/// (lower-case) form.
pub fn normalize_domain(domain: &str) -> Result<String> {
    let lower = domain
        .trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_lowercase();
    check_domain(&lower).map_err(|why| Error::Rejected(format!("domain {:?}: {why}", shorten(domain))))?;
    Ok(lower)
}

/// Labels of letters, digits and hyphens (internationalized letters allowed), 1–63 bytes each,
/// not starting or ending with a hyphen.
fn check_domain(domain: &str) -> std::result::Result<(), String> {
    if domain.is_empty() || domain.len() > 253 {
        return Err("a domain must be 1-253 bytes".into());
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each part of the domain must be 1-63 bytes".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of the domain starts or ends with '-'".into());
        }
        if let Some(c) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(format!("{c:?} is not allowed in a domain"));
        }
    }
    Ok(())
}

/// The form of a login name as given that logins are looked up and rate-limited by: lower
/// case, at most [`MAX_NAME_BYTES`]. Never fails: any string a client sends has one.
pub fn login_key(given: &str) -> String {
    shorten(&given.to_lowercase()).to_string()
}

/// At most [`MAX_NAME_BYTES`] bytes of `s`, cut at a character boundary: error messages and
/// audit records stay bounded whatever a client sends.
pub(crate) fn shorten(s: &str) -> &str {
    if s.len() <= MAX_NAME_BYTES {
        return s;
    }
    let mut end = MAX_NAME_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_folded_and_checked() {
        assert_eq!(normalize_user_name("Alice").unwrap(), "alice");
        assert_eq!(
            normalize_user_name("Alice@Example.com").unwrap(),
            "alice@example.com"
        );
        assert_eq!(normalize_user_name("a.b_c+d-e").unwrap(), "a.b_c+d-e");
        assert_eq!(normalize_user_name(&"a".repeat(254)).unwrap().len(), 254);
        for bad in [
            "",
            "-alice",
            ".alice",
            "al ice",
            "alice\n",
            "ålice",
            "a/b",
            &"a".repeat(255),
        ] {
            let e = normalize_user_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("user name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn addresses_are_folded_and_checked() {
        assert_eq!(
            normalize_address(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            normalize_address("a+tag@mail.example.com").unwrap(),
            "a+tag@mail.example.com"
        );
        assert_eq!(normalize_address("jörg@müller.de").unwrap(), "jörg@müller.de");
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@example..com",
            "alice@-example.com",
            "al ice@example.com",
            "<alice@example.com>",
            "Alice <alice@example.com>",
            ".alice@example.com",
            "a..b@example.com",
            "alice@exa_mple.com",
        ] {
            let e = normalize_address(bad).unwrap_err().to_string();
            assert!(e.starts_with("address"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn domains_are_folded_and_checked() {
        assert_eq!(normalize_domain("@Example.COM.").unwrap(), "example.com");
        assert_eq!(normalize_domain("localhost").unwrap(), "localhost");
        for bad in [
            "",
            "exa mple.com",
            "example..com",
            "-example.com",
            "*.example.com",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_keys_are_bounded_whatever_is_sent() {
        assert_eq!(login_key("Alice"), "alice");
        let long = "ä".repeat(300);
        let key = login_key(&long);
        assert!(key.len() <= MAX_NAME_BYTES && key.chars().all(|c| c == 'ä'));
    }
}
