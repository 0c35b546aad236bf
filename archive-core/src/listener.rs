//! Listener addresses in configuration files: `"127.0.0.1:1143"`, or `"none"` to switch a
//! listener off. A missing key keeps the default, so switching off needs a value of its own.
//! Used by every front door's `#[serde(with = "archive_core::listener")]` fields.

use std::net::SocketAddr;

/// Reads an address or `"none"`.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text: String = serde::Deserialize::deserialize(d)?;
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a listener address like \"127.0.0.1:1143\" (or \"none\")"
        ))
    })
}

/// Writes an address, or `"none"`.
pub fn serialize<S: serde::Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str("none"),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Listeners {
        #[serde(with = "super")]
        a: Option<std::net::SocketAddr>,
    }

    #[test]
    fn none_switches_off_and_bad_text_names_itself() {
        let on: Listeners = serde_json::from_str(r#"{"a":"127.0.0.1:1143"}"#).unwrap();
        assert_eq!(on.a, Some("127.0.0.1:1143".parse().unwrap()));
        let off: Listeners = serde_json::from_str(r#"{"a":"None"}"#).unwrap();
        assert_eq!(off.a, None);
        assert_eq!(serde_json::to_string(&off).unwrap(), r#"{"a":"none"}"#);
        let bad = serde_json::from_str::<Listeners>(r#"{"a":"localhost"}"#).unwrap_err();
        assert!(
            bad.to_string()
                .contains("\"localhost\" is not a listener address"),
            "{bad}"
        );
    }
}
