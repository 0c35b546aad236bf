//! The API's errors: a status and a JSON body `{"error": "...", "detail": "..."}` — never a
//! stack trace, and for a message outside the caller's scope exactly the body of a missing
//! one. Store errors are answered by their [`Fault`].

use archive_core::access::LoginRefused;
use archive_core::search::{QueryError, Stopped};
use archive_core::Fault;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[error("{status} {error}: {detail}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short stable token: `bad-request`, `bad-query`, `unauthorized`, `forbidden`,
    /// `not-found`, `too-large`, `rate-limited`, `unavailable`, `search-limit`, `internal`.
    pub error: &'static str,
    /// What a person can act on.
    pub detail: String,
    /// 1-based character position in the query, for `bad-query`.
    pub position: Option<usize>,
    /// Seconds to wait, for `rate-limited` (the `Retry-After` header).
    pub retry_after: Option<u64>,
    /// What went wrong, typed, where a page says it in its own language (`detail` is English).
    /// (Boxed: most errors have none, and every `Result` carries the size of the error.)
    pub problem: Option<Box<Problem>>,
}

/// A problem a page words from its language's catalogue (`i18n::Text::problem`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The query does not parse, or has nothing to search for: where and why.
    Query(QueryError),
    /// A cursor that is not one this search returned.
    Cursor,
    /// The search ran out of time or was cancelled.
    Stopped(Stopped),
    /// A page size outside 1..=`max`.
    Limit {
        /// The largest page size.
        max: usize,
    },
    /// An order the pages do not know.
    Sort,
    /// A request target (address) of `len` bytes, over `max`.
    AddressTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A query of `len` bytes, over `max`.
    QueryTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The one answer for a message that does not exist or is not the caller's.
pub const NO_SUCH_MESSAGE: &str = "no such message";

/// The JSON body, as `openapi.json` describes it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short stable token (`not-found`, `bad-query`, …).
    pub error: String,
    /// What went wrong, for people.
    pub detail: String,
    /// For `bad-query`: the 1-based character position of the problem in `q`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
            position: None,
            retry_after: None,
            problem: None,
        }
    }

    /// This error with its typed `problem`.
    pub fn with(self, problem: Problem) -> ApiError {
        ApiError {
            problem: Some(Box::new(problem)),
            ..self
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: logged in, but not allowed (or a cross-site request, or a bad CSRF token).
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404, the same for a missing message and one outside the caller's scope.
    pub fn no_such_message() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", NO_SUCH_MESSAGE)
    }

    /// 404 for something other than a message (an attachment number of a message the
    /// caller may see).
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 404 for a path that is not part of the API.
    pub fn no_such_path() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such API path")
    }

    /// 413: a body over the limit.
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
    }

    /// A form that could not be read: 413 when it is too large, else 400.
    pub fn form(what: &str, rejection: axum::extract::rejection::FormRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::too_large(format!("{what}: the body is too large"));
        }
        ApiError::bad_request(format!("{what}: {}", rejection.body_text()))
    }

    /// 408: the request's body did not arrive in time.
    pub fn request_timeout(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", detail)
    }

    /// 429: the server is busy with as many of these as it takes at once; try again after
    /// `secs` seconds.
    pub fn busy(detail: impl Into<String>, secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", detail)
        }
    }

    /// 503: try again later.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A store error, by whose fault it is. Not-found errors are the one "no such message"
    /// answer; damage and bugs are logged and answered without their details.
    pub fn store(e: archive_core::Error) -> ApiError {
        match e.fault() {
            Fault::NotFound => ApiError::no_such_message(),
            Fault::Request => match e {
                archive_core::Error::Query(q) => ApiError {
                    position: Some(q.position),
                    ..ApiError::new(StatusCode::BAD_REQUEST, "bad-query", q.to_string())
                        .with(Problem::Query(q))
                },
                e @ archive_core::Error::Malformed {
                    what: "search cursor",
                    ..
                } => ApiError::bad_request(e.to_string()).with(Problem::Cursor),
                e => ApiError::bad_request(e.to_string()),
            },
            Fault::Unavailable => {
                tracing::warn!(error = %e, "web: store unavailable");
                ApiError::unavailable("the archive cannot answer right now; try again later")
            }
            Fault::Limit => {
                let stopped = match &e {
                    archive_core::Error::SearchStopped(why) => Some(Box::new(Problem::Stopped(*why))),
                    _ => None,
                };
                ApiError {
                    problem: stopped,
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "search-limit",
                        format!("{e}; narrow the query"),
                    )
                }
            }
            Fault::Damaged => {
                tracing::error!(error = %e, "web: stored data unreadable or a bug");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "stored data could not be read; the server log says more",
                )
            }
        }
    }

    /// A refused login.
    pub fn login(refused: LoginRefused) -> ApiError {
        match refused {
            LoginRefused::Failed => ApiError::unauthorized("authentication failed"),
            LoginRefused::RateLimited(after) => {
                let secs = after.0.as_secs().max(1);
                ApiError {
                    retry_after: Some(secs),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate-limited",
                        format!("too many failed logins; try again in {secs} s"),
                    )
                }
            }
            LoginRefused::Unavailable(why) => {
                tracing::warn!(%why, "web: login unavailable");
                ApiError::unavailable("logins cannot be checked right now; try again later")
            }
        }
    }

    /// A blocking task that did not finish (it panicked): a bug, answered without details.
    pub fn task_failed() -> ApiError {
        tracing::error!("web: a request's blocking task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_string(),
            detail: self.detail,
            position: self.position,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mailvault\", Bearer"),
            );
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Every answer of the API, as it leaves: never cached (it is archived mail and who may see
/// it), and an error that axum or hyper made rather than a handler — a path segment that is
/// not UTF-8, a method the path does not take, a body it could not read — in the API's JSON
/// shape like every other error, with its status and its short reason as the detail.
pub async fn api_answers(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut response = if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (parts, body) = response.into_parts();
        let detail = reason_of(status, body).await;
        let mut json = ApiError::new(status, error_name(status), detail).into_response();
        // Allow (405), Retry-After and the like stay.
        for (name, value) in &parts.headers {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                json.headers_mut().entry(name).or_insert(value.clone());
            }
        }
        json
    } else {
        response
    };
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The reason an answer axum made gives in its body (one line, such as "Invalid URL: Invalid
/// UTF-8 in `seq`"), or its status's name when it gives none or more than a line's worth.
pub(crate) async fn reason_of(status: StatusCode, body: axum::body::Body) -> String {
    match axum::body::to_bytes(body, 1024).await {
        Ok(text) if !text.is_empty() => String::from_utf8_lossy(&text).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_ascii_lowercase(),
    }
}

/// The `error` of a status that no handler chose.
fn error_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "bad-request",
        _ => "internal",
    }
}

/// Runs store work on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(ApiError::task_failed()))
}
