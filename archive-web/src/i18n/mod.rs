//! The pages' words, one catalogue per language ([`en`], [`de`]): every string a page shows
//! is a field of [`Text`], so a catalogue missing one does not compile. The language is the
//! `mv_lang` cookie's (set by the switch on every page, `POST /lang`), else the first of
//! `Accept-Language` we speak, else English.

mod de;
mod en;

use axum::http::{header, HeaderMap};

use crate::error::{ApiError, Problem};

/// The cookie holding the chosen language.
pub const LANG_COOKIE: &str = "mv_lang";

/// A language the pages speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// German.
    De,
}

impl Lang {
    /// The language code (`lang` attribute, cookie value).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// The language of `code` (`en`, `de`, `de-AT`, …), if we speak it.
    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "de" => Some(Lang::De),
            _ => None,
        }
    }

    /// The language of a request: the cookie, else `Accept-Language` (by quality), else
    /// English.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(lang) = crate::csrf::cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
            return lang;
        }
        let Some(accept) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) else {
            return Lang::En;
        };
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',').take(32) {
            let mut pieces = item.split(';');
            let code = pieces.next().unwrap_or_default();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(code) {
                if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                    best = Some((quality, lang));
                }
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The catalogue.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::En => &en::TEXT,
            Lang::De => &de::TEXT,
        }
    }
}

/// Every string the pages show.
pub struct Text {
    pub skip: &'static str,
    pub nav_label: &'static str,
    pub nav_search: &'static str,
    pub nav_status: &'static str,
    pub nav_audit: &'static str,
    pub nav_users: &'static str,
    pub logout: &'static str,
    pub logged_in_as: &'static str,
    pub language: &'static str,
    pub login_title: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub login_button: &'static str,
    pub login_failed: &'static str,
    pub login_rate_limited: &'static str,
    pub login_forbidden: &'static str,
    pub unavailable: &'static str,
    pub search_title: &'static str,
    pub query_label: &'static str,
    pub search_button: &'static str,
    pub help_summary: &'static str,
    pub help_intro: &'static str,
    pub help_examples: [(&'static str, &'static str); 10],
    pub keyboard_hint: &'static str,
    pub criteria_legend: &'static str,
    pub crit_from: &'static str,
    pub crit_to: &'static str,
    pub crit_subject: &'static str,
    pub crit_text: &'static str,
    pub crit_after: &'static str,
    pub crit_before: &'static str,
    pub crit_has_attachment: &'static str,
    pub crit_attachment: &'static str,
    pub crit_min_size: &'static str,
    pub crit_max_size: &'static str,
    pub crit_size_hint: &'static str,
    pub crit_domain: &'static str,
    pub crit_button: &'static str,
    pub crit_bad_date: &'static str,
    pub crit_bad_size: &'static str,
    pub built_query: &'static str,
    pub results_label: &'static str,
    pub messages_found: &'static str,
    /// The search results' export button, and what it makes.
    pub export_button: &'static str,
    pub export_hint: &'static str,
    pub col_date: &'static str,
    pub col_from: &'static str,
    pub col_to: &'static str,
    pub col_subject: &'static str,
    pub col_size: &'static str,
    pub col_attachment: &'static str,
    pub col_snippet: &'static str,
    pub sort_label: &'static str,
    pub sort_date: &'static str,
    pub sort_relevance: &'static str,
    pub sort_size: &'static str,
    /// The facets' heading and groups (counts of the whole result, each a narrowing link).
    pub facets: &'static str,
    pub facet_years: &'static str,
    pub facet_months: &'static str,
    pub facet_domains: &'static str,
    pub facet_other: &'static str,
    pub page_size: &'static str,
    pub next_page: &'static str,
    pub first_page: &'static str,
    pub no_results: &'static str,
    pub query_error: &'static str,
    pub no_subject: &'static str,
    pub has_attachment: &'static str,
    pub headers: &'static str,
    pub h_from: &'static str,
    pub h_to: &'static str,
    pub h_cc: &'static str,
    pub h_date: &'static str,
    pub h_subject: &'static str,
    pub h_message_id: &'static str,
    pub envelope: &'static str,
    pub env_delivery: &'static str,
    pub env_mail_from: &'static str,
    pub env_recipients: &'static str,
    pub env_received: &'static str,
    pub text_body: &'static str,
    pub html_preview: &'static str,
    pub html_body: &'static str,
    pub no_body: &'static str,
    pub truncated: &'static str,
    pub remote_images: &'static str,
    pub attachments: &'static str,
    pub att_name: &'static str,
    pub att_type: &'static str,
    pub att_size: &'static str,
    pub no_attachments: &'static str,
    pub raw_download: &'static str,
    pub thread: &'static str,
    pub no_thread: &'static str,
    pub integrity: &'static str,
    pub verified: &'static str,
    pub failed: &'static str,
    pub int_seq: &'static str,
    pub int_received: &'static str,
    pub int_blake3: &'static str,
    pub int_recorded: &'static str,
    pub int_checkpoint: &'static str,
    pub int_explain: &'static str,
    pub proof_download: &'static str,
    pub checkpoint_download: &'static str,
    pub out_title: &'static str,
    pub out_intro: &'static str,
    pub out_open: &'static str,
    pub out_warning: &'static str,
    pub status_title: &'static str,
    pub st_messages: &'static str,
    pub st_last_seq: &'static str,
    pub st_search_indexed: &'static str,
    pub st_lag: &'static str,
    pub st_on_disk: &'static str,
    pub st_log: &'static str,
    pub st_index: &'static str,
    pub st_search_index: &'static str,
    pub st_per_message: &'static str,
    pub st_ratio_note: &'static str,
    pub st_checkpoint: &'static str,
    pub st_unsigned: &'static str,
    pub st_last_verify: &'static str,
    pub st_never_verified: &'static str,
    pub st_health: &'static str,
    pub st_ok: &'static str,
    pub st_archive_messages: &'static str,
    pub st_ratio: &'static str,
    pub audit_title: &'static str,
    pub filter: &'static str,
    pub a_user: &'static str,
    pub a_action: &'static str,
    pub a_since: &'static str,
    pub a_until: &'static str,
    pub a_apply: &'static str,
    pub a_time: &'static str,
    pub a_target: &'static str,
    pub a_origin: &'static str,
    pub no_events: &'static str,
    pub users_title: &'static str,
    pub u_name: &'static str,
    pub u_role: &'static str,
    pub u_scope: &'static str,
    pub u_state: &'static str,
    pub u_all_domains: &'static str,
    pub u_disabled: &'static str,
    pub u_enabled: &'static str,
    pub not_found_title: &'static str,
    pub not_found: &'static str,
    pub bad_request_title: &'static str,
    pub error_title: &'static str,
    pub back_to_search: &'static str,
    /// A problem of a search or request (a query's with its position), worded: one match over
    /// every problem per catalogue, so a new problem without words does not compile.
    pub problem: fn(&Problem) -> String,
}

impl Text {
    /// What an error page or message says of `e`: its problem in this language, else the
    /// (English) detail.
    pub fn say(&self, e: &ApiError) -> String {
        e.problem
            .as_deref()
            .map_or_else(|| e.detail.clone(), |p| (self.problem)(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_cookie_wins_then_accept_language_by_quality() {
        assert_eq!(Lang::of(&headers(&[])), Lang::En);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "de-DE,de;q=0.9,en;q=0.8")])),
            Lang::De
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "fr, en;q=0.5, de;q=0.7")])),
            Lang::De
        );
        assert_eq!(Lang::of(&headers(&[("accept-language", "fr")])), Lang::En);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "de"), ("cookie", "mv_lang=en")])),
            Lang::En
        );
        assert_eq!(Lang::De.text().verified, "verifiziert");
        assert_eq!(Lang::En.text().verified, "verified");
    }

    #[test]
    fn query_problems_are_english_as_the_core_says_them_and_german_on_german_pages() {
        use archive_core::search::Query;
        for q in [
            "a OR",
            "(a",
            "before:2024-13-01",
            "larger:big",
            "has:x",
            "foo:bar",
            "\"open",
            "()",
            "AND a",
            "a )",
        ] {
            let e = Query::parse(q).unwrap_err();
            let en = (Lang::En.text().problem)(&Problem::Query(e.clone()));
            assert_eq!(en, e.to_string(), "English is the core's, byte for byte");
            let de = (Lang::De.text().problem)(&Problem::Query(e.clone()));
            assert!(de.starts_with(&format!("Position {}: ", e.position)), "{de}");
            assert_ne!(de, en);
        }
        let e = Query::parse("before:2024-13-01").unwrap_err();
        assert_eq!(
            (Lang::De.text().problem)(&Problem::Query(e)),
            "Position 8: '2024-13-01' nach 'before:' ist kein gültiges Datum"
        );
    }
}
