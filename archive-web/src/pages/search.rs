//! `GET /search`: the query box, its help, the criteria form that writes a query, and a page
//! of results. The URL holds the whole search (query, order, page size, cursor), so a search
//! can be bookmarked or handed on. Searches run through the API's own code
//! (`api::search::search_options` and `run_search`: the same limits, cursor checks and
//! `search` audit record).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use archive_core::search::{Hit, Query, SearchOptions, Snippet};

use super::criteria::Criteria;
use super::{date_text, error_page, escape, html, size_text, url_encode, Page, Viewer};
use crate::api::search::{run_search, search_options, FacetValue, FacetsJson, MAX_QUERY_BYTES};
use crate::api::MAX_QUERY_STRING_BYTES;
use crate::auth::AppState;
use crate::error::{ApiError, Problem};

/// The page sizes offered.
const PAGE_SIZES: [usize; 4] = [25, 50, 100, 500];
/// The page size unless the URL says otherwise (the API's default).
const DEFAULT_PAGE_SIZE: usize = crate::api::search::DEFAULT_LIMIT;

/// The parameters of a search page (unknown ones are ignored: a bookmarked URL of a later
/// version still opens).
#[derive(serde::Deserialize, Default)]
struct Params {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    #[serde(flatten)]
    criteria: Criteria,
}

/// One row of results.
struct Row {
    seq: u64,
    date: String,
    from: String,
    to: String,
    subject: String,
    size: String,
    attachment: bool,
    /// Escaped text with `<mark>` around the matches: the only markup that reaches the page.
    snippet: String,
}

/// One facet group (years, months, sender domains): links that narrow the search.
struct FacetGroup {
    id: &'static str,
    label: &'static str,
    links: Vec<FacetLink>,
}

/// One facet value: the search narrowed to it, and how many messages that finds.
struct FacetLink {
    value: String,
    count: u64,
    href: String,
}

/// A link to sort by.
struct SortLink {
    key: &'static str,
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    page: Page,
    q: String,
    criteria: Criteria,
    built_query: Option<String>,
    criteria_error: Option<String>,
    query_error: Option<String>,
    error: Option<String>,
    limit: usize,
    sizes: [usize; 4],
    sort: &'static str,
    sorts: Vec<SortLink>,
    searched: bool,
    total: u64,
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
    /// Counts of the whole result (first page only: later pages do not pay for them again).
    facets: Vec<FacetGroup>,
    /// Matching messages from sender domains not listed.
    other_domains: u64,
}

/// `GET /search`.
pub async fn page(State(state): State<AppState>, viewer: Viewer, RawQuery(raw): RawQuery) -> Response {
    let Viewer { caller, page } = viewer;
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_STRING_BYTES {
        let problem = Problem::AddressTooLong {
            len: raw.len(),
            max: MAX_QUERY_STRING_BYTES,
        };
        let e = ApiError::bad_request((page.t.problem)(&problem)).with(problem);
        return error_page(&page, e);
    }
    let params: Params = match crate::api::parse_query(&raw) {
        Ok(p) => p,
        Err(e) => return error_page(&page, e),
    };
    let t = page.t;
    let mut view = SearchPage {
        page,
        q: params.q.trim().to_string(),
        criteria: params.criteria.clone(),
        built_query: None,
        criteria_error: None,
        query_error: None,
        error: None,
        limit: DEFAULT_PAGE_SIZE,
        sizes: PAGE_SIZES,
        sort: "date",
        sorts: Vec::new(),
        searched: false,
        total: 0,
        rows: Vec::new(),
        next: None,
        first: None,
        facets: Vec::new(),
        other_domains: 0,
    };
    if params.criteria.any() {
        match params.criteria.query(t) {
            Ok(built) => {
                view.q = built.clone();
                view.built_query = Some(built);
            }
            Err(why) => {
                view.criteria_error = Some(why);
                return html(StatusCode::BAD_REQUEST, &view);
            }
        }
    }
    // Page sort names: `date` is the API's `newest`.
    let (sort_key, api_sort) = match params.sort.as_deref() {
        None | Some("date") | Some("newest") => ("date", "newest"),
        Some("oldest") => ("oldest", "oldest"),
        Some("relevance") => ("relevance", "relevance"),
        Some("size") => ("size", "size"),
        Some(_) => ("date", "invalid"),
    };
    view.sort = sort_key;
    let options = match search_options(params.limit.as_deref(), Some(api_sort), params.cursor.clone()) {
        // Facets count the whole result: on the first page only, which is where they are shown.
        // People read the total next to the facets' counts: exact on every page.
        Ok(o) => SearchOptions {
            facets: o.cursor.is_none(),
            count_limit: None,
            ..o
        },
        Err(e) => {
            view.error = Some(match api_sort {
                "invalid" => (t.problem)(&Problem::Sort),
                _ => t.say(&e),
            });
            return html(StatusCode::BAD_REQUEST, &view);
        }
    };
    view.limit = options.limit;
    view.sorts = [
        ("date", t.sort_date),
        ("relevance", t.sort_relevance),
        ("size", t.sort_size),
    ]
    .into_iter()
    .map(|(key, label)| SortLink {
        key,
        label,
        href: link(&view.q, key, view.limit, None),
        current: key == sort_key,
    })
    .collect();
    if view.q.is_empty() {
        return html(StatusCode::OK, &view);
    }
    if view.q.len() > MAX_QUERY_BYTES {
        view.error = Some((t.problem)(&Problem::QueryTooLong {
            len: view.q.len(),
            max: MAX_QUERY_BYTES,
        }));
        return html(StatusCode::BAD_REQUEST, &view);
    }
    let query = match Query::parse(&view.q) {
        Ok(q) => q,
        Err(e) => {
            view.query_error = Some((t.problem)(&Problem::Query(e)));
            return html(StatusCode::BAD_REQUEST, &view);
        }
    };
    let was_paged = options.cursor.is_some();
    let results = match run_search(&state, caller, view.q.clone(), query, options).await {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            // A query that parses but cannot run is the query's error, with its position.
            match e.problem.as_deref() {
                Some(Problem::Query(_)) => view.query_error = Some(t.say(&e)),
                _ => view.error = Some(t.say(&e)),
            }
            return html(StatusCode::BAD_REQUEST, &view);
        }
        Err(e) => return error_page(&view.page, e),
    };
    view.searched = true;
    view.total = results.total;
    if let Some(facets) = results.facets {
        let facets = FacetsJson::new(facets, &view.q);
        view.other_domains = facets.other_sender_domains;
        let group = |id, label, values: Vec<FacetValue>| FacetGroup {
            id,
            label,
            links: values
                .into_iter()
                .filter_map(|v| {
                    let href = link(v.query.as_deref()?, sort_key, view.limit, None);
                    Some(FacetLink {
                        value: v.value,
                        count: v.count,
                        href,
                    })
                })
                .collect(),
        };
        view.facets = vec![
            group("facet-years", t.facet_years, facets.years),
            group("facet-months", t.facet_months, facets.months),
            group("facet-domains", t.facet_domains, facets.sender_domains),
        ];
        view.facets.retain(|g| !g.links.is_empty());
    }
    view.rows = results.hits.into_iter().map(|h| row(h, t.no_subject)).collect();
    view.next = results
        .next_cursor
        .map(|c| link(&view.q, sort_key, view.limit, Some(&c)));
    if was_paged {
        view.first = Some(link(&view.q, sort_key, view.limit, None));
    }
    html(StatusCode::OK, &view)
}

/// The URL of a search.
fn link(q: &str, sort: &str, limit: usize, cursor: Option<&str>) -> String {
    let mut url = format!("/search?q={}&sort={sort}&limit={limit}", url_encode(q));
    if let Some(c) = cursor {
        url.push_str("&cursor=");
        url.push_str(&url_encode(c));
    }
    url
}

fn row(hit: Hit, no_subject: &str) -> Row {
    let first = |list: &[archive_core::search::Mailbox]| -> String {
        let mut text = list.first().map(ToString::to_string).unwrap_or_default();
        if list.len() > 1 {
            text.push_str(&format!(" (+{})", list.len() - 1));
        }
        text
    };
    Row {
        seq: hit.seq,
        date: date_text(hit.date),
        from: first(&hit.from),
        to: first(&hit.to),
        subject: if hit.subject.trim().is_empty() {
            no_subject.to_string()
        } else {
            hit.subject.clone()
        },
        size: size_text(hit.size),
        attachment: !hit.attachments.is_empty(),
        snippet: hit.snippet.as_ref().map(marked).unwrap_or_default(),
    }
}

/// The snippet escaped, its matches in `<mark>`: escaping happens piece by piece, so nothing
/// of the mail's text can become markup.
fn marked(snippet: &Snippet) -> String {
    let text = &snippet.text;
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    for &(s, e) in &snippet.highlights {
        if s < at || e > text.len() || s > e || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        out.push_str(&escape(&text[at..s]));
        out.push_str("<mark>");
        out.push_str(&escape(&text[s..e]));
        out.push_str("</mark>");
        at = e;
    }
    out.push_str(&escape(&text[at..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_escaped_and_only_marks_are_markup() {
        let s = Snippet {
            text: "<script>alert(1)</script> invoice <b>".into(),
            highlights: vec![(26, 33), (30, 99)],
        };
        assert_eq!(
            marked(&s),
            "&lt;script&gt;alert(1)&lt;/script&gt; <mark>invoice</mark> &lt;b&gt;"
        );
    }
}
