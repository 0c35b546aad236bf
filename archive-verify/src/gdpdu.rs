//! The GDPdU/GoBD "Beschreibungsstandard" description (`index.xml`) of an export bundle's
//! `messages.csv`, and the standard's DTD (version 1.5, `gdpdu-01-09-2004.dtd`) that ships next
//! to it, so a tax auditor's import tool (IDEA and the like) reads the table without help.
//!
//! `index.xml` is a pure function of [`IndexMeta`]: the exporter writes it and the verifier
//! writes it again and compares the bytes. Every text put in is XML-escaped, and characters XML
//! 1.0 cannot carry at all are replaced by U+FFFD.
//!
//! How the CSV dialect maps onto the standard (docs/FORMAT.md §"export bundle"):
//! - UTF-8 is `<UTF8/>`; comma, CRLF and `"` are `ColumnDelimiter`, `RecordDelimiter` and
//!   `TextEncapsulator`;
//! - the header line is skipped by `<Range><From>2</From>…`; `To` is the last data record, so
//!   the description states how many rows there are;
//! - integers (seq, size) are `Numeric` with `Accuracy` 0, never quoted, and have no decimal or
//!   grouping symbol, so the standard's defaults (`,` and `.`) do not matter;
//! - the receive time is `AlphaNumeric`: the standard's `Date` format is a day pattern
//!   (`DD.MM.YYYY` by default) with no time of day, `T` or zone, so an RFC 3339 instant would
//!   be cut to its day or not read at all; the column's description says the format instead;
//! - fields never contain line breaks (the exporter replaces control characters by spaces):
//!   the standard has no rule for a record delimiter inside an encapsulated field.

/// The DTD `index.xml` names, as published (see `gdpdu-01-09-2004.dtd.SOURCE` for where this
/// copy comes from and its SHA-256).
pub const DTD: &str = include_str!("gdpdu-01-09-2004.dtd");

/// The DTD's file name: `index.xml`'s DOCTYPE refers to it, and it lies next to `index.xml`.
pub const DTD_NAME: &str = "gdpdu-01-09-2004.dtd";

/// The description's file name in the bundle.
pub const INDEX_NAME: &str = "index.xml";

/// The table `index.xml` describes, relative to `index.xml`.
pub const CSV_NAME: &str = "messages.csv";

/// What a column holds, in the standard's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// A whole number, written without sign, decimal or grouping symbols.
    Integer,
    /// Text; `max_length` when every value has a known bound.
    Text { max_length: Option<u32> },
}

/// One column of `messages.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The name in the CSV header line and in `index.xml`.
    pub name: &'static str,
    /// What it holds.
    pub kind: ColumnKind,
    /// What it means, for the auditor (`index.xml`'s `Description`).
    pub description: &'static str,
}

const fn text(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind: ColumnKind::Text { max_length: None },
        description,
    }
}

/// The columns of `messages.csv`, in order; the first is the primary key.
pub const COLUMNS: &[Column] = &[
    Column {
        name: "seq",
        kind: ColumnKind::Integer,
        description: "Sequence number of the message in the archive log",
    },
    text(
        "received",
        "Receive time in UTC, RFC 3339 (YYYY-MM-DDThh:mm:ss, optional fraction, Z)",
    ),
    text(
        "date",
        "Date header field as written in the message (may be empty)",
    ),
    text("from", "From header field, decoded"),
    text("to", "To header field, decoded"),
    text("cc", "Cc header field, decoded"),
    text("subject", "Subject header field, decoded"),
    Column {
        name: "size",
        kind: ColumnKind::Integer,
        description: "Size of the message in bytes",
    },
    Column {
        name: "blake3",
        kind: ColumnKind::Text { max_length: Some(64) },
        description: "BLAKE3 hash of the message file, hexadecimal",
    },
    Column {
        name: "sha256",
        kind: ColumnKind::Text { max_length: Some(64) },
        description: "SHA-256 hash of the message file, hexadecimal",
    },
    text(
        "file",
        "Path of the message file (RFC 5322, byte-exact) in this export",
    ),
];

/// What `index.xml` says beyond the fixed table layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexMeta {
    /// The archive's origin (its checkpoint origin line): the data supplier's name.
    pub origin: String,
    /// Where the archive is operated (organisation, place): the data supplier's location.
    pub location: String,
    /// The export's query or range, as the exporter states it: the data supplier's comment.
    pub query: String,
    /// Data rows in `messages.csv` (the header line not counted).
    pub rows: u64,
}

/// `index.xml` for `meta`: UTF-8, LF line ends, the same bytes for the same `meta`.
pub fn index_xml(meta: &IndexMeta) -> String {
    let mut x = String::with_capacity(4096);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!("<!DOCTYPE DataSet SYSTEM \"{DTD_NAME}\">\n"));
    x.push_str("<DataSet>\n");
    x.push_str("  <Version>1.0</Version>\n");
    x.push_str("  <DataSupplier>\n");
    element(&mut x, 4, "Name", &meta.origin);
    element(&mut x, 4, "Location", &meta.location);
    element(&mut x, 4, "Comment", &meta.query);
    x.push_str("  </DataSupplier>\n");
    x.push_str("  <Media>\n");
    element(&mut x, 4, "Name", &format!("mailvault export of {}", meta.origin));
    x.push_str("    <Table>\n");
    element(&mut x, 6, "URL", CSV_NAME);
    element(&mut x, 6, "Name", "messages");
    element(
        &mut x,
        6,
        "Description",
        "Archived e-mail messages, one row per message",
    );
    x.push_str("      <UTF8/>\n");
    // Record 1 is the header line; records 2 ..= rows + 1 are the data.
    x.push_str("      <Range>\n");
    x.push_str("        <From>2</From>\n");
    if meta.rows > 0 {
        x.push_str(&format!("        <To>{}</To>\n", meta.rows + 1));
    }
    x.push_str("      </Range>\n");
    x.push_str("      <VariableLength>\n");
    element(&mut x, 8, "ColumnDelimiter", ",");
    x.push_str("        <RecordDelimiter>&#13;&#10;</RecordDelimiter>\n");
    element(&mut x, 8, "TextEncapsulator", "\"");
    for (i, column) in COLUMNS.iter().enumerate() {
        let tag = if i == 0 {
            "VariablePrimaryKey"
        } else {
            "VariableColumn"
        };
        x.push_str(&format!("        <{tag}>\n"));
        element(&mut x, 10, "Name", column.name);
        element(&mut x, 10, "Description", column.description);
        match column.kind {
            ColumnKind::Integer => {
                x.push_str("          <Numeric>\n");
                x.push_str("            <Accuracy>0</Accuracy>\n");
                x.push_str("          </Numeric>\n");
            }
            ColumnKind::Text { max_length } => {
                x.push_str("          <AlphaNumeric/>\n");
                if let Some(n) = max_length {
                    x.push_str(&format!("          <MaxLength>{n}</MaxLength>\n"));
                }
            }
        }
        x.push_str(&format!("        </{tag}>\n"));
    }
    x.push_str("      </VariableLength>\n");
    x.push_str("    </Table>\n");
    x.push_str("  </Media>\n");
    x.push_str("</DataSet>\n");
    x
}

/// `<tag>text</tag>` on its own line, indented.
fn element(x: &mut String, indent: usize, tag: &str, text: &str) {
    x.extend(std::iter::repeat_n(' ', indent));
    x.push('<');
    x.push_str(tag);
    x.push('>');
    escape_into(x, text);
    x.push_str("</");
    x.push_str(tag);
    x.push_str(">\n");
}

/// `text` as XML character data: markup characters as entities, tab, LF and CR as character
/// references (a parser would otherwise normalise CR away), and what XML 1.0 cannot carry at
/// all (other C0 controls, U+FFFE, U+FFFF) as U+FFFD.
fn escape_into(x: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => x.push_str("&amp;"),
            '<' => x.push_str("&lt;"),
            '>' => x.push_str("&gt;"),
            '"' => x.push_str("&quot;"),
            '\'' => x.push_str("&apos;"),
            '\t' => x.push_str("&#9;"),
            '\n' => x.push_str("&#10;"),
            '\r' => x.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => x.push('\u{fffd}'),
            c => x.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(origin: &str, query: &str) -> IndexMeta {
        IndexMeta {
            origin: origin.into(),
            location: "Musterstadt".into(),
            query: query.into(),
            rows: 3,
        }
    }

    #[test]
    fn hostile_origin_and_query_are_text_not_markup() {
        let xml = index_xml(&meta(
            "evil</Name></DataSupplier><!--",
            "a & b <![CDATA[ ]]> \"q\" 'p'\r\n\u{0}\u{7}\u{fffe}",
        ));
        assert!(
            xml.contains("<Name>evil&lt;/Name&gt;&lt;/DataSupplier&gt;&lt;!--</Name>"),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<Comment>a &amp; b &lt;![CDATA[ ]]&gt; &quot;q&quot; &apos;p&apos;&#13;&#10;\u{fffd}\u{fffd}\u{fffd}</Comment>"
            ),
            "{xml}"
        );
        assert!(!xml.contains('\u{0}') && !xml.contains('\u{7}'));
        // The only markup is the description's own: as many elements open as in a plain one.
        assert_eq!(
            xml.matches('<').count(),
            index_xml(&meta("a", "b")).matches('<').count()
        );
    }

    #[test]
    fn the_same_meta_gives_the_same_bytes_and_rows_are_stated() {
        let m = meta("mail.example.org/archive", "--from-seq 1 --to-seq 3");
        assert_eq!(index_xml(&m), index_xml(&m.clone()));
        assert!(index_xml(&m).contains("<From>2</From>\n        <To>4</To>"));
        let empty = IndexMeta { rows: 0, ..m };
        assert!(!index_xml(&empty).contains("<To>"));
    }

    #[test]
    fn the_dtd_is_the_recorded_text() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(DTD.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        // The SHA-256 recorded in gdpdu-01-09-2004.dtd.SOURCE.
        assert_eq!(
            hex,
            "8ffe21550673f8b9c2aeb0fb7b104fa07d70a69dece5bd8e8b02bf5ad530a0c0"
        );
        assert!(include_str!("gdpdu-01-09-2004.dtd.SOURCE").contains(&hex));
    }

    #[test]
    fn the_dtd_is_version_1_5() {
        assert!(DTD.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!--Versions available:"));
        assert!(DTD.contains("1.5 (September-01-2004)"));
        assert!(DTD.contains("<!ELEMENT ForeignKey (Name+, References, Alias*)>"));
    }

    #[test]
    fn every_column_is_described_once_in_order() {
        let xml = index_xml(&meta("o", "q"));
        let mut at = 0;
        for column in COLUMNS {
            let needle = format!("<Name>{}</Name>", column.name);
            let found = xml[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{} missing or out of order", column.name));
            at += found + needle.len();
        }
    }
}
