//! Deutsch.

use super::Text;
use archive_core::search::{ExpectedValue, QueryProblem, QueryToken, Stopped, OPERATORS};

use crate::error::Problem;

pub static TEXT: Text = Text {
    skip: "Zum Inhalt springen",
    nav_label: "Hauptnavigation",
    nav_search: "Suche",
    nav_status: "Status",
    nav_audit: "Zugriffsprotokoll",
    nav_users: "Benutzer",
    logout: "Abmelden",
    logged_in_as: "Angemeldet als",
    language: "Sprache",
    login_title: "Anmelden",
    user: "Benutzer",
    password: "Passwort",
    login_button: "Anmelden",
    login_failed: "Benutzername oder Passwort ist falsch.",
    login_rate_limited: "Zu viele fehlgeschlagene Anmeldungen. Bitte warten Sie; Sekunden bis zum nächsten Versuch:",
    login_forbidden: "Das Formular ist abgelaufen oder kam von einer anderen Website. Bitte erneut versuchen.",
    unavailable: "Das Archiv kann gerade nicht antworten. Bitte später erneut versuchen.",
    search_title: "Archiv durchsuchen",
    query_label: "Suchanfrage",
    search_button: "Suchen",
    help_summary: "So schreiben Sie eine Suchanfrage",
    help_intro: "Wörter werden in Betreff, Text, Namen und Adressen gesucht; alle müssen vorkommen. Operatoren grenzen die Suche ein:",
    help_examples: [
        ("Rechnung März", "beide Wörter"),
        ("Rechnung OR invoice", "eines der Wörter"),
        ("Rechnung -bezahlt", "ohne das Wort bezahlt"),
        ("\"Bericht Quartal\"", "die Wörter in dieser Reihenfolge"),
        ("from:alice@example.com", "von dieser Adresse gesendet"),
        ("to:bob subject:Vertrag", "an bob, mit Vertrag im Betreff"),
        ("after:2024-01-31 before:2024-03-01", "datiert im Februar 2024 (UTC)"),
        ("has:attachment filename:pdf", "mit einem Anhang namens …pdf…"),
        ("larger:5M", "größer als 5 MiB"),
        ("domain:example.com", "ein Absender oder Empfänger in dieser Domain"),
    ],
    keyboard_hint: "Tastatur: / springt zur Suchanfrage, j und k bewegen durch die Treffer, Enter öffnet einen.",
    criteria_legend: "Suche nach Kriterien",
    crit_from: "Von",
    crit_to: "An",
    crit_subject: "Betreff",
    crit_text: "Text (überall)",
    crit_after: "Datiert nach (JJJJ-MM-TT)",
    crit_before: "Datiert vor (JJJJ-MM-TT)",
    crit_has_attachment: "Hat einen Anhang",
    crit_attachment: "Name des Anhangs",
    crit_min_size: "Größer als",
    crit_max_size: "Kleiner als",
    crit_size_hint: "Bytes, oder mit k, M, G (z. B. 10k, 5M)",
    crit_domain: "Domain (Absender oder Empfänger)",
    crit_button: "Suchanfrage bilden und suchen",
    crit_bad_date: "ist kein Datum JJJJ-MM-TT:",
    crit_bad_size: "ist keine Größe wie 10k oder 5M:",
    built_query: "Die Kriterien ergeben diese Suchanfrage (oben bearbeitbar):",
    results_label: "Treffer",
    messages_found: "Nachrichten gefunden",
    col_date: "Datum",
    col_from: "Von",
    col_to: "An",
    col_subject: "Betreff",
    col_size: "Größe",
    col_attachment: "Anhang",
    col_snippet: "Auszug",
    sort_label: "Sortieren nach",
    sort_date: "Datum",
    sort_relevance: "Relevanz",
    sort_size: "Größe",
    facets: "Suche eingrenzen",
    facet_years: "Jahr",
    facet_months: "Monat",
    facet_domains: "Absenderdomain",
    facet_other: "andere Absenderdomains",
    page_size: "Pro Seite",
    next_page: "Nächste Seite",
    first_page: "Erste Seite",
    no_results: "Keine Nachricht passt.",
    query_error: "Die Suchanfrage ist nicht lesbar",
    no_subject: "(kein Betreff)",
    has_attachment: "hat Anhänge",
    headers: "Kopfzeilen",
    h_from: "Von",
    h_to: "An",
    h_cc: "Kopie",
    h_date: "Datum",
    h_subject: "Betreff",
    h_message_id: "Message-ID",
    envelope: "Umschlag (wie journalisiert)",
    env_delivery: "Zustellung",
    env_mail_from: "Umschlag-Absender",
    env_recipients: "Umschlag-Empfänger",
    env_received: "Empfangen",
    text_body: "Text",
    html_preview: "Aus dem HTML-Teil gewonnener Text",
    html_body: "HTML-Ansicht (bereinigt, ohne Skripte und externe Inhalte)",
    no_body: "Diese Nachricht hat keinen anzeigbaren Text; laden Sie das Original herunter.",
    truncated: "Der Text ist lang und wurde gekürzt; das Original enthält alles.",
    remote_images: "Externe Bilder und eingebettete Inhalte wurden blockiert, damit niemand erfährt, dass Sie diese Nachricht lesen.",
    attachments: "Anhänge",
    att_name: "Name",
    att_type: "Typ",
    att_size: "Größe",
    no_attachments: "Keine Anhänge.",
    raw_download: "Original herunterladen (.eml)",
    thread: "Konversation",
    no_thread: "Keine weiteren Nachrichten dieser Konversation, die Sie sehen dürfen.",
    integrity: "Integrität",
    verified: "verifiziert",
    failed: "Prüfung fehlgeschlagen",
    int_seq: "Eintrag",
    int_received: "Archiviert am",
    int_blake3: "blake3 der Bytes jetzt",
    int_recorded: "blake3 im signierten Log",
    int_checkpoint: "Signierter Checkpoint (Baumgröße)",
    int_explain: "Jetzt geprüft: die Bytes gegen den Log-Eintrag, die Signatur des Checkpoints und der Inklusionsbeweis des Eintrags. Laden Sie beide herunter, um offline mit mailvault verify zu prüfen.",
    proof_download: "Inklusionsbeweis (JSON)",
    checkpoint_download: "Signierter Checkpoint",
    out_title: "Sie verlassen das Archiv",
    out_intro: "Dieser Link in einer Nachricht führt zu:",
    out_open: "Link öffnen",
    out_warning: "Links in E-Mails können betrügerisch sein. Öffnen Sie ihn nur, wenn Sie ihm vertrauen; das Archiv sendet keinen Referrer.",
    status_title: "Archivstatus",
    st_messages: "Nachrichten in Ihrem Bereich",
    st_last_seq: "Einträge im Log",
    st_search_indexed: "Suchindex angewendet bis Eintrag",
    st_lag: "Noch nicht durchsuchbare Einträge",
    st_on_disk: "Bytes auf der Platte",
    st_log: "Log",
    st_index: "Schlüssel-Wert-Index und Baum",
    st_search_index: "Suchindex",
    st_per_message: "Auf der Platte je Nachricht (Bytes)",
    st_ratio_note: "Bytes auf der Platte zählen Log, Schlüssel-Wert-Index und Baum, wie mailvault status; der Suchindex ist abgeleitet und steht gesondert. Größen sind höchstens 10 Sekunden alt.",
    st_checkpoint: "Neuester signierter Checkpoint (Baumgröße)",
    st_unsigned: "Einträge noch ohne Checkpoint",
    st_last_verify: "Letztes mailvault verify",
    st_never_verified: "In diesem Datenverzeichnis ist kein verify-Lauf verzeichnet (mailvault verify regelmäßig ausführen).",
    st_health: "Zustand",
    st_ok: "nimmt Mail an",
    st_archive_messages: "Nachrichten im Archiv (Rohgröße)",
    st_ratio: "Auf der Platte ÷ Rohgröße",
    audit_title: "Zugriffsprotokoll",
    filter: "Filter",
    a_user: "Benutzer",
    a_action: "Aktion",
    a_since: "Seit (JJJJ-MM-TT)",
    a_until: "Bis (JJJJ-MM-TT)",
    a_apply: "Anzeigen",
    a_time: "Zeit",
    a_target: "Worauf",
    a_origin: "Von",
    no_events: "Keine passenden Ereignisse.",
    users_title: "Benutzer",
    u_name: "Name",
    u_role: "Rolle",
    u_scope: "Adressen oder Domains",
    u_state: "Zustand",
    u_all_domains: "alle Domains",
    u_disabled: "gesperrt",
    u_enabled: "aktiv",
    not_found_title: "Nicht gefunden",
    not_found: "Diese Seite oder Nachricht gibt es nicht.",
    bad_request_title: "Nicht möglich",
    error_title: "Fehler",
    back_to_search: "Zurück zur Suche",
    export_button: "Als Beweispaket exportieren (ZIP)",
    export_hint: "jede Nachricht mit ihrem Nachweis, offline prüfbar mit mailvault verify-bundle; höchstens 10.000 Nachrichten",
    problem,
};

/// Deutsche Worte für ein Problem; die einer Suchanfrage mit ihrer Position.
fn problem(p: &Problem) -> String {
    match p {
        Problem::Query(e) => format!("Position {}: {}", e.position, query_problem(&e.problem)),
        Problem::Cursor => {
            "Diese Seitenmarke gehört nicht zu dieser Suche; bitte die Suche neu beginnen.".into()
        }
        Problem::Stopped(Stopped::Deadline) => {
            "Suche abgebrochen: Sie hat länger als erlaubt gedauert. Bitte die Suchanfrage eingrenzen.".into()
        }
        Problem::Stopped(Stopped::Cancelled) => "Suche abgebrochen.".into(),
        Problem::Limit { max } => format!("Die Seitengröße muss zwischen 1 und {max} liegen."),
        Problem::Sort => "Sortiert wird nach date, oldest, relevance oder size.".into(),
        Problem::QueryTooLong { len, max } => {
            format!("Die Suchanfrage ist {len} Bytes lang; erlaubt sind höchstens {max}.")
        }
        Problem::AddressTooLong { len, max } => {
            format!("Die Adresse ist {len} Bytes lang; erlaubt sind höchstens {max}.")
        }
    }
}

fn query_problem(p: &QueryProblem) -> String {
    match p {
        QueryProblem::Empty => "die Suchanfrage ist leer".into(),
        QueryProblem::Unexpected(t) => format!("unerwartet: {}", token(t)),
        QueryProblem::UnmatchedClose => "')' ohne passende '('".into(),
        QueryProblem::Unterminated => "Anführungszeichen ohne Ende (ein '\"' ohne schließendes '\"')".into(),
        QueryProblem::EmptyPhrase => "leere Phrase \"\"".into(),
        QueryProblem::MissingValue { operator, expected } => {
            let expected = match expected {
                ExpectedValue::Date => "ein Datum JJJJ-MM-TT",
                ExpectedValue::Size => "eine Größe wie 10k oder 5M",
                ExpectedValue::Attachment => "'attachment'",
                ExpectedValue::Text => "ein Wort oder eine \"Phrase\"",
            };
            format!("nach '{operator}:' fehlt {expected}")
        }
        QueryProblem::NotADate { operator, text } => {
            format!("nach '{operator}:' wird ein Datum JJJJ-MM-TT erwartet, nicht '{text}'")
        }
        QueryProblem::InvalidDate { operator, text } => {
            format!("'{text}' nach '{operator}:' ist kein gültiges Datum")
        }
        QueryProblem::NotASize { operator, text } => format!(
            "nach '{operator}:' wird eine Größe wie 10k oder 5M erwartet, nicht '{text}' \
             (eine Zahl von Bytes, wahlweise mit k, M oder G dahinter: 1024er-Schritte)"
        ),
        QueryProblem::UnknownHasValue { value } => {
            format!("unbekannter Wert '{value}' für 'has:' (nur has:attachment)")
        }
        QueryProblem::UnknownOperator { name } => format!(
            "unbekannter Operator '{name}:' (bekannt: {OPERATORS}); in Anführungszeichen \
             wird das Wort als Text gesucht"
        ),
        QueryProblem::ExpectedTermAfter { token: t, at } => {
            format!("nach {} an Position {at} fehlt ein Suchbegriff", token(t))
        }
        QueryProblem::ExpectedTermAtEnd => "am Ende der Suchanfrage fehlt ein Suchbegriff".into(),
        QueryProblem::EmptyParentheses => "leere Klammern".into(),
        QueryProblem::Unclosed { open_at } => {
            format!("die '(' an Position {open_at} wird nicht mit ')' geschlossen")
        }
        QueryProblem::NeedsTermBefore(t) => format!("vor {} fehlt ein Suchbegriff", token(t)),
        QueryProblem::TooDeep { max } => {
            format!("die Suchanfrage ist tiefer als {max} Ebenen aus Klammern und NOT verschachtelt")
        }
        QueryProblem::TooManyTerms { max } => {
            format!("die Suchanfrage hat mehr als {max} Suchbegriffe")
        }
        QueryProblem::NothingToSearch => "sie enthält keine durchsuchbaren Wörter (nur Satzzeichen?)".into(),
    }
}

/// A token as a German message names it (operators and words stay as written).
fn token(t: &QueryToken) -> String {
    match t {
        QueryToken::Operator => "ein Operator".into(),
        other => other.to_string(),
    }
}
