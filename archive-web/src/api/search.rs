//! `GET /api/v1/search?q=&cursor=&limit=&sort=`: the query language of docs/SEARCH.md, run as
//! the caller's principal (the scope is part of the index query, so totals, pages and cursors
//! never count mail outside it). One `search` audit record per request, before the search runs.
//! `facets=1` adds counts by year, month and sender domain, each with the query that narrows
//! the search to it (`archive_core::search::narrow`, which the HTML page links with too).

use axum::extract::{RawQuery, State};
use axum::Json;

use archive_core::audit::{query_text, AuditEvent};
use archive_core::search::{narrow, Bucket, Facets, Hit, Query, SearchOptions, SearchResults, Sort};

use super::{date_source, date_text, mailboxes, params};
use crate::auth::{AppState, Caller};
use crate::error::{ApiError, Problem};

/// Most hits a page may hold.
pub const MAX_LIMIT: usize = 500;
/// Hits per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// Longest query text accepted (bytes); the query string as a whole is bounded too.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// A page of hits.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    /// Messages matching the query in the caller's scope, over all pages: every one when
    /// `total_exact`, else at least this many (`exact_total=1` counts them all).
    pub total: u64,
    /// Whether `total` counts every match.
    pub total_exact: bool,
    /// This page, in the requested order.
    pub hits: Vec<HitJson>,
    /// `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The last log seq the search index had applied.
    pub indexed_seq: u64,
    /// Counts over every matching message (all pages), with `facets=1` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<FacetsJson>,
}

/// Counts of the matching messages by year, month and sender domain.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct FacetsJson {
    /// `false` only when more than 100,000 distinct sender domains matched: then a domain may
    /// be missing from `sender_domains` (counted in `other_sender_domains`). Counts shown are
    /// exact either way.
    pub exact: bool,
    /// Per year (UTC, of `date`), newest first, at most 50.
    pub years: Vec<FacetValue>,
    /// Per month (UTC, `YYYY-MM`), newest first, at most 24.
    pub months: Vec<FacetValue>,
    /// Per sender domain (of the first From address), most messages first, at most 20.
    pub sender_domains: Vec<FacetValue>,
    /// Matching messages whose sender domain is not listed, or that have none.
    pub other_sender_domains: u64,
}

/// One facet value and the search that narrows to it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct FacetValue {
    /// `2024`, `2024-03` or `example.com`.
    pub value: String,
    /// Matching messages with this value.
    pub count: u64,
    /// `q` narrowed to this value (e.g. `invoice fromdomain:example.com`): searching it gives
    /// `count` as its total. Absent when the query language cannot say the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl FacetsJson {
    /// The facets of a search for `q`, each value with `q` narrowed to it (the API's answer
    /// and the search page's links).
    pub(crate) fn new(facets: Facets, q: &str) -> FacetsJson {
        let values = |buckets: Vec<Bucket>| {
            buckets
                .into_iter()
                .map(|b| FacetValue {
                    query: b.clause.map(|c| narrow(q, &c)),
                    value: b.value,
                    count: b.count,
                })
                .collect()
        };
        FacetsJson {
            exact: facets.exact,
            years: values(facets.years),
            months: values(facets.months),
            sender_domains: values(facets.sender_domains),
            other_sender_domains: facets.other_sender_domains,
        }
    }
}

/// One message that matched.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HitJson {
    /// The message record's seq: `/messages/{seq}`.
    pub seq: u64,
    /// Date header (RFC 3339, UTC), or the receive time without one.
    pub date: String,
    /// `header` or `received`: where `date` comes from.
    pub date_source: String,
    /// From (and Sender), `Name <address>`.
    pub from: Vec<String>,
    /// To.
    pub to: Vec<String>,
    /// Cc.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Raw size in bytes.
    pub size: u64,
    /// Whether the message has attachments.
    pub has_attachment: bool,
    /// Attachment file names.
    pub attachments: Vec<String>,
    /// A body excerpt around the matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// Byte ranges of `snippet` that matched.
    pub highlights: Vec<(usize, usize)>,
    /// Relevance score (`sort=relevance` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

impl From<Hit> for HitJson {
    fn from(hit: Hit) -> HitJson {
        let (snippet, highlights) = match hit.snippet {
            Some(s) => (Some(s.text), s.highlights),
            None => (None, Vec::new()),
        };
        HitJson {
            seq: hit.seq,
            date: date_text(hit.date),
            date_source: date_source(hit.date_is_received),
            from: mailboxes(&hit.from),
            to: mailboxes(&hit.to),
            cc: mailboxes(&hit.cc),
            subject: hit.subject,
            size: hit.size,
            has_attachment: !hit.attachments.is_empty(),
            attachments: hit.attachments,
            snippet,
            highlights,
            score: hit.score,
        }
    }
}

/// The parameters, as sent.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
    sort: Option<String>,
    facets: Option<String>,
    exact_total: Option<String>,
}

/// Search the archive.
#[utoipa::path(get, path = "/search", tag = "search",
    params(
        ("q" = String, Query, description = "The query (docs/SEARCH.md), e.g. `from:alice subject:invoice`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<usize>, Query, description = "Hits per page, 1..=500 (default 50)"),
        ("sort" = Option<String>, Query, description = "`newest` (default), `oldest`, `relevance` or `size`"),
        ("facets" = Option<String>, Query, description = "`1` (or `true`): add `facets`, counts over all pages by year, month and sender domain (ask on the first page only; `0`/`false`, the default, skips them)"),
        ("exact_total" = Option<String>, Query, description = "`1` (or `true`): count every match. Without it (and without `facets`), a search in date order counts exactly up to 10,000 matches and stops where its page needs no more: `total` is then at least that many and `total_exact` is false"),
    ),
    responses(
        (status = 200, body = SearchPage),
        (status = 400, description = "bad query (with its position), cursor, limit or sort", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<SearchPage>, ApiError> {
    let p: SearchParams = params(raw.as_deref())?;
    let text = p.q.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "q is missing: what to search for (docs/SEARCH.md)",
        ));
    }
    if text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "q is {} bytes long; at most {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    let query = Query::parse(&text).map_err(|e| ApiError::store(e.into()))?;
    let mut options = search_options(p.limit.as_deref(), p.sort.as_deref(), p.cursor)?;
    options.facets = match p.facets.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("facets must be 1 or 0")),
    };
    match p.exact_total.as_deref() {
        None | Some("0") | Some("false") => {}
        Some("1") | Some("true") => options.count_limit = None,
        Some(_) => return Err(ApiError::bad_request("exact_total must be 1 or 0")),
    }
    let results = run_search(&state, caller, text.clone(), query, options).await?;
    Ok(Json(SearchPage {
        total: results.total,
        total_exact: results.total_exact,
        hits: results.hits.into_iter().map(HitJson::from).collect(),
        next_cursor: results.next_cursor,
        indexed_seq: results.indexed_seq,
        facets: results.facets.map(|f| FacetsJson::new(f, &text)),
    }))
}

/// The options of a search from its `limit`, `sort` and `cursor` parameters (shared by the
/// API and the search page): limit 1..=[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]), sort
/// `newest` (default), `oldest`, `relevance` or `size`, a cursor of at most 256 bytes (the
/// store checks it is one it made for this order).
pub(crate) fn search_options(
    limit: Option<&str>,
    sort: Option<&str>,
    cursor: Option<String>,
) -> Result<SearchOptions, ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1..={MAX_LIMIT}"))
                    .with(Problem::Limit { max: MAX_LIMIT })
            })?,
    };
    let sort = match sort {
        None | Some("newest") => Sort::Newest,
        Some("oldest") => Sort::Oldest,
        Some("relevance") => Sort::Relevance,
        Some("size") => Sort::Size,
        Some(_) => {
            return Err(
                ApiError::bad_request("sort must be newest, oldest, relevance or size").with(Problem::Sort),
            )
        }
    };
    if cursor.as_ref().is_some_and(|c| c.len() > 256) {
        return Err(ApiError::bad_request("cursor is not one this search returned").with(Problem::Cursor));
    }
    Ok(SearchOptions {
        sort,
        limit,
        cursor,
        snippets: true,
        facets: false,
        count_limit: SearchOptions::default().count_limit,
    })
}

/// Runs a search for the caller: its `search` audit record first (`web <q>`), then the
/// search as their principal (shared by the API and the search page).
pub(crate) async fn run_search(
    state: &AppState,
    caller: Caller,
    text: String,
    query: Query,
    options: SearchOptions,
) -> Result<SearchResults, ApiError> {
    let store = state.store.clone();
    let user = caller.user.clone();
    state
        .searches
        .run(&user, move || {
            // Every search is an access: its record is written before it runs and durable
            // before its answer leaves (the fsync overlaps the search).
            let event = AuditEvent::new(
                &caller.user,
                "search",
                format!("web {}", query_text(&text)),
                &caller.client.to_string(),
            );
            store
                .audited_access(&event, || store.search(&caller.principal, &query, &options))
                .map_err(ApiError::store)
        })
        .await
}
