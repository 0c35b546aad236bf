//! index.xml against the genuine GDPdU DTD, checked by a validator that is not ours: libxml2's
//! `xmllint --noout --valid` (Debian libxml2-utils; .ci/run installs it).

use std::path::Path;
use std::process::Command;

use archive_verify::gdpdu::{index_xml, IndexMeta, COLUMNS, CSV_NAME, DTD, DTD_NAME, INDEX_NAME};

/// A bundle's GDPdU part in `dir`: the DTD, `index` as index.xml and a two-row messages.csv.
fn write_bundle(dir: &Path, index: &str) {
    std::fs::write(dir.join(DTD_NAME), DTD).unwrap();
    std::fs::write(dir.join(INDEX_NAME), index).unwrap();
    let header: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let csv = format!(
        "{}\r\n\
         1,2024-02-06T10:05:09Z,\"Tue, 6 Feb 2024 11:05:09 +0100\",Erika <erika@example.org>,bob@example.net,,\"Quote \"\"this\"\"\",1234,{h},{h},messages/1.eml\r\n\
         2,2024-02-06T10:06:00.250Z,,a@example.org,b@example.org,c@example.org,Grüße,99,{h},{h},messages/2.eml\r\n",
        header.join(","),
        h = "ab".repeat(32),
    );
    std::fs::write(dir.join(CSV_NAME), csv).unwrap();
}

/// What libxml2 says about the published DTD itself whatever the document: `Media`'s content
/// model `(Name, Command*, Table*, Command*, AcceptNoTables?)` is ambiguous (a `Command` after
/// `Name` may belong to either `Command*`), which XML 1.0 asks of DTDs for compatibility only.
/// libxml2 reports it as a "validity error" and still exits 0; it is the standard's text, not
/// something index.xml can change.
const DTD_OWN_REMARK: &str = "Content model of Media is not determinist";

/// `xmllint --noout --valid` on `dir`/index.xml: success, and the error lines it printed
/// other than [`DTD_OWN_REMARK`].
fn xmllint(dir: &Path) -> (bool, String) {
    let out = Command::new("xmllint")
        .args(["--noout", "--valid", "--nonet", INDEX_NAME])
        .current_dir(dir)
        .output()
        .expect("xmllint must be installed (Debian package libxml2-utils; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error") && !l.contains(DTD_OWN_REMARK))
        .collect();
    (out.status.success(), errors.join("\n"))
}

fn meta() -> IndexMeta {
    IndexMeta {
        origin: "mail.example.org/archive".into(),
        location: "Beispiel GmbH, Musterstraße 1, 12345 Musterstadt".into(),
        query: "from:erika@example.org since:2024-01-01 & <everything> \"quoted\"\r\n\u{1}".into(),
        rows: 2,
    }
}

#[test]
fn index_xml_is_valid_against_the_dtd() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), &index_xml(&meta()));
    let (ok, errors) = xmllint(dir.path());
    assert!(ok && errors.is_empty(), "xmllint refused index.xml:\n{errors}");
    // An empty export too (no To in the Range).
    write_bundle(dir.path(), &index_xml(&IndexMeta { rows: 0, ..meta() }));
    let (ok, errors) = xmllint(dir.path());
    assert!(
        ok && errors.is_empty(),
        "xmllint refused the empty export's index.xml:\n{errors}"
    );
}

#[test]
fn xmllint_refuses_a_description_the_dtd_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let good = index_xml(&meta());
    // Each breaks one rule of the DTD and nothing else: the validation catches each.
    let broken = [
        // DataSupplier needs Location.
        good.replacen("    <Location>", "    <Place>", 1)
            .replacen("</Location>", "</Place>", 1),
        // A column needs a type.
        good.replacen("          <AlphaNumeric/>\n", "", 1),
        // MaxLength belongs to AlphaNumeric columns only.
        good.replacen(
            "<Accuracy>0</Accuracy>\n          </Numeric>\n",
            "<Accuracy>0</Accuracy>\n          </Numeric>\n          <MaxLength>9</MaxLength>\n",
            1,
        ),
        // The encoding comes before the Range.
        good.replacen("      <UTF8/>\n", "", 1).replacen(
            "      </Range>\n",
            "      </Range>\n      <UTF8/>\n",
            1,
        ),
    ];
    for (i, index) in broken.iter().enumerate() {
        assert_ne!(index, &good, "broken variant {i} changed nothing");
        write_bundle(dir.path(), index);
        let (ok, errors) = xmllint(dir.path());
        assert!(!ok, "xmllint accepted broken variant {i}:\n{index}");
        assert!(errors.contains("validity error"), "variant {i}: {errors}");
    }
}
