//! A message's HTML body, and where its links lead.
//!
//! `GET /messages/{seq}/html` is the document the message page frames. Mail HTML is hostile
//! by default, so it passes three walls, each enough on its own against script:
//!
//! 1. ammonia sanitises it ([`sanitize`]): an allow-list of tags and attributes (no script,
//!    style, form, svg, math, iframe, object, meta, base; no `on*` or `style` attribute),
//!    parsed by html5ever as a browser parses, so markup that mutates after parsing (mXSS)
//!    is serialised in its parsed shape. Remote images and any other remote reference are
//!    removed (the page says so) — a tracking pixel must not learn who read the mail and
//!    when; only inline `data:` images of raster types stay. Links are rewritten to our
//!    `/out?url=…` page with `rel="noopener noreferrer"` and `target="_blank"`.
//! 2. The response's own CSP, `default-src 'none'; style-src 'unsafe-inline'; img-src data:`:
//!    nothing loads, nothing runs, whatever slipped through.
//! 3. The message page frames it in `<iframe sandbox="allow-popups
//!    allow-popups-to-escape-sandbox">`: without `allow-scripts` nothing runs, without
//!    `allow-same-origin` the document has an opaque origin (no cookies, no access to the app
//!    or its API), without `allow-forms`/`allow-top-navigation` it cannot post or replace
//!    the app. `allow-popups` lets a link open at all (links carry `target="_blank"`: in the
//!    frame itself the `/out` page would be refused by its own `frame-ancestors 'none'`);
//!    `allow-popups-to-escape-sandbox` lets that new tab be our ordinary `/out` page (with
//!    the app's own CSP) instead of a sandboxed, script-less copy. The popup only ever opens
//!    `/out`, which shows the target and never redirects by itself.
//!
//! `GET /out?url=…` shows where a link leads and offers it as a link with
//! `rel="noreferrer noopener"`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use archive_core::mime_parts;

use super::message::MAX_BODY_BYTES;
use super::{error_page, escape, html, url_encode, Page, Viewer};
use crate::api::messages::read;
use crate::auth::AppState;
use crate::error::ApiError;

/// The CSP of the framed HTML body: nothing may load or run, and the document is sandboxed
/// by its own header too, so that opened on its own (not in the message page's frame) it
/// still has an opaque origin and no script.
pub const HTML_BODY_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox";

/// Longest link target shown by `/out` (bytes).
const MAX_OUT_URL_BYTES: usize = 8 * 1024;

/// Sanitised HTML, and whether anything remote was taken out.
pub struct Sanitized {
    /// The HTML that may be shown (in the sandboxed frame).
    pub html: String,
    /// Remote images (or other remote references) were removed.
    pub blocked: bool,
}

/// Inline images that may stay: raster types only (an SVG could carry script, even if an
/// image would not run it).
const INLINE_IMAGES: [&str; 5] = [
    "data:image/png;",
    "data:image/jpeg;",
    "data:image/jpg;",
    "data:image/gif;",
    "data:image/webp;",
];

/// Sanitises a message's HTML body (see the module documentation).
pub fn sanitize(html: &str) -> Sanitized {
    let blocked = Arc::new(AtomicBool::new(false));
    let noted = blocked.clone();
    let clean = ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "data"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::PassThrough)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .attribute_filter(move |element, attribute, value| filter(element, attribute, value, &noted))
        .clean(html)
        .to_string();
    Sanitized {
        html: clean,
        blocked: blocked.load(Ordering::Relaxed),
    }
}

/// Keeps, rewrites or drops one attribute that survived ammonia's allow-list (ammonia asks
/// before its own URL checks, which then see our relative `/out` links and inline images).
fn filter<'u>(element: &str, attribute: &str, value: &'u str, blocked: &AtomicBool) -> Option<Cow<'u, str>> {
    let lower = value.trim().to_ascii_lowercase();
    match (element, attribute) {
        // Links of any element (a, area): through /out, web and mail addresses only.
        (_, "href") => {
            if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") {
                Some(Cow::Owned(format!("/out?url={}", url_encode(value.trim()))))
            } else {
                None
            }
        }
        (_, "src") => {
            if INLINE_IMAGES.iter().any(|p| lower.starts_with(p)) {
                Some(Cow::Borrowed(value))
            } else {
                blocked.store(true, Ordering::Relaxed);
                None
            }
        }
        // Other URL attributes (cite, longdesc, …) are never fetched by a browser; dropping
        // them keeps every URL in the document ours.
        (_, "cite" | "longdesc" | "background" | "srcset" | "poster" | "action" | "formaction") => {
            blocked.store(true, Ordering::Relaxed);
            None
        }
        _ => Some(Cow::Borrowed(value)),
    }
}

/// `GET /messages/{seq}/html`: the sanitised HTML body as a document of its own (a `view`
/// audit record, target `web seq N html`).
pub async fn document(State(state): State<AppState>, viewer: Viewer, Path(seq): Path<String>) -> Response {
    let Viewer { caller, page } = viewer;
    let found = read(
        &state,
        caller,
        &seq,
        "view",
        |_| Ok(" html".to_string()),
        |_, m| Ok(mime_parts::bodies(&m.raw, MAX_BODY_BYTES).html),
    )
    .await;
    let body = match found {
        Ok(Some(html)) => sanitize(&html).html,
        Ok(None) => String::new(),
        Err(e) => return error_page(&page, e),
    };
    let document = format!(
        "<!doctype html>\n<html><head><title>{}</title></head><body>\n{body}\n</body></html>\n",
        escape(page.t.html_body)
    );
    let mut response = (StatusCode::OK, document).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(HTML_BODY_CSP),
    );
    // Framed by the message page only (the app's other answers say DENY).
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The mail's own document has no form of ours: it sends no referrer at all.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The escaped text with every `http://` and `https://` link made a link to `/out`. One pass
/// over the text (it may be a MiB of links).
pub fn linkify(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut at = 0;
    while let Some(found) = lower[at..].find("http") {
        let start = at + found;
        let scheme = if lower[start..].starts_with("https://") {
            8
        } else if lower[start..].starts_with("http://") {
            7
        } else {
            out.push_str(&escape(&text[at..start + 4]));
            at = start + 4;
            continue;
        };
        let tail = &text[start..];
        let mut end = tail
            .find(|c: char| c.is_whitespace() || c.is_control() || "<>\"'`".contains(c))
            .unwrap_or(tail.len());
        // Punctuation that ends a sentence is not part of the link.
        while end > scheme && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', ']', '}']) {
            end -= 1;
        }
        let url = &tail[..end];
        out.push_str(&escape(&text[at..start]));
        if url.len() > scheme {
            out.push_str(&format!(
                "<a href=\"/out?url={}\" rel=\"noopener noreferrer\">{}</a>",
                url_encode(url),
                escape(url)
            ));
        } else {
            out.push_str(&escape(url));
        }
        at = start + end;
    }
    out.push_str(&escape(&text[at..]));
    out
}

#[derive(serde::Deserialize)]
pub struct OutParams {
    #[serde(default)]
    url: String,
}

#[derive(Template)]
#[template(path = "out.html")]
struct OutPage {
    page: Page,
    url: String,
    /// Offered as a link only when it is a web or mail address.
    linkable: bool,
}

/// `GET /out?url=…`: where a link in a message leads. It never redirects: the person sees
/// the target and decides. It needs no session: a link clicked in the sandboxed HTML body
/// opens from an opaque origin, so the browser sends no `SameSite=Strict` cookie with it,
/// and the page shows nothing but the address it was given.
pub async fn out(viewer: Result<Viewer, Response>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let page = match viewer {
        Ok(viewer) => viewer.page,
        Err(_) => Page::anonymous(&headers),
    };
    let Ok(params) = crate::api::parse_query::<OutParams>(raw.as_deref().unwrap_or_default()) else {
        return error_page(&page, ApiError::bad_request("url: not a link"));
    };
    if params.url.len() > MAX_OUT_URL_BYTES {
        return error_page(
            &page,
            ApiError::bad_request(format!("the link is longer than {MAX_OUT_URL_BYTES} bytes")),
        );
    }
    let lower = params.url.trim().to_ascii_lowercase();
    let linkable = ["http://", "https://", "mailto:"]
        .iter()
        .any(|s| lower.starts_with(s))
        && !params.url.contains(|c: char| c.is_control());
    html(
        StatusCode::OK,
        &OutPage {
            page,
            url: params.url.trim().to_string(),
            linkable,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_text_lead_through_out_and_everything_is_escaped() {
        let text = "see https://example.com/a?b=1&c=<2>. and javascript:alert(1) <b>x</b> HTTP://X.Y/z, done";
        let html = linkify(text);
        assert_eq!(
            html,
            "see <a href=\"/out?url=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1%26c%3D\" rel=\"noopener noreferrer\">\
             https://example.com/a?b=1&amp;c=</a>&lt;2&gt;. and javascript:alert(1) &lt;b&gt;x&lt;/b&gt; \
             <a href=\"/out?url=HTTP%3A%2F%2FX.Y%2Fz\" rel=\"noopener noreferrer\">HTTP://X.Y/z</a>, done"
        );
        assert_eq!(linkify("http:// alone"), "http:// alone");
    }

    #[test]
    fn sanitising_keeps_text_and_drops_everything_active() {
        let s = sanitize(
            "<p onclick=alert(1)>hi<script>alert(2)</script><img src=\"https://t.example/p.gif\">\
             <a href=\"javascript:alert(3)\">j</a><a href=\"https://example.com/\">ok</a>\
             <img src=\"data:image/png;base64,iVBORw0KGgo=\"><img src=\"data:image/svg+xml,<svg onload=alert(4)>\">\
             <style>@import url(https://x.invalid/)</style><form action=https://x.invalid><input></form>",
        );
        assert!(s.blocked);
        let h = &s.html;
        for bad in [
            "onclick",
            "<script",
            "alert(2)",
            "t.example",
            "javascript:",
            "svg",
            "<style",
            "@import",
            "<form",
            "x.invalid",
        ] {
            assert!(!h.contains(bad), "{bad} in {h}");
        }
        assert!(h.contains("hi"), "{h}");
        assert!(
            h.contains("href=\"/out?url=https%3A%2F%2Fexample.com%2F\""),
            "{h}"
        );
        assert!(h.contains("target=\"_blank\""), "{h}");
        assert!(h.contains("data:image/png;base64"), "{h}");
        assert!(!sanitize("<p>plain</p>").blocked);
    }
}
