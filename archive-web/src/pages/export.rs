//! `POST /export`: the search page's results as an evidence bundle (docs/COMPLIANCE.md), the
//! same ZIP `mailvault export --query` writes, for the viewer's own scope. A state-changing
//! request: origin and the session's CSRF token are checked first. The bundle is written to
//! an unnamed temporary file in the data directory (the ZIP writer seeks), its `export`
//! audit record (with its SHA-256) is written before a byte is sent, and the file is streamed
//! from disk, so a large export costs the server disk, not memory. At most
//! [`MAX_WEB_EXPORT`] messages: more is a clear error pointing to the CLI's volumes.

use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use sha2::{Digest, Sha256};

use archive_core::access::{PerUser, UserShare};
use archive_core::audit::{query_text, AuditEvent};
use archive_core::export::bundle::{BundleRequest, ExportSelection};
use archive_core::export::selected_deliveries;
use archive_core::search::{Budget, Query};

use super::{error_page, Viewer};
use crate::auth::AppState;
use crate::csrf;
use crate::error::{blocking, ApiError};

/// Most messages one web export holds (one bundle volume).
pub const MAX_WEB_EXPORT: u64 = 10_000;

/// Exports written at once: each costs a core and its size in disk while it runs; one more
/// is told to come back (429) rather than queued.
const MAX_RUNNING_EXPORTS: usize = 2;

static RUNNING_EXPORTS: AtomicUsize = AtomicUsize::new(0);

/// Users with an export being written: one each, so that one user cannot hold every place.
static EXPORTING_USERS: LazyLock<Arc<PerUser>> = LazyLock::new(|| Arc::new(PerUser::new(1)));

/// One of the [`MAX_RUNNING_EXPORTS`] places, and its user's one, given back when dropped.
struct ExportSlot {
    _users: UserShare,
}

/// Why no export place was free.
#[derive(Debug, PartialEq, Eq)]
enum NoPlace {
    /// The user is writing one already.
    Yours,
    /// Every place is taken.
    All,
}

impl ExportSlot {
    fn take(user: &str) -> Result<ExportSlot, NoPlace> {
        let users = EXPORTING_USERS.enter(user).ok_or(NoPlace::Yours)?;
        if RUNNING_EXPORTS.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING_EXPORTS {
            RUNNING_EXPORTS.fetch_sub(1, Ordering::SeqCst);
            return Err(NoPlace::All);
        }
        Ok(ExportSlot { _users: users })
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        RUNNING_EXPORTS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The export form as posted.
#[derive(serde::Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    q: String,
}

/// Bytes read from the bundle file per chunk of the response.
const CHUNK: usize = 64 * 1024;

/// `POST /export`: the bundle of what `q` finds in the viewer's scope, as a download.
pub async fn bundle(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Result<Form<ExportForm>, FormRejection>,
) -> Response {
    let page = viewer.page.clone();
    let refuse = |e: ApiError| error_page(&page, e);
    if let Err(e) = csrf::same_origin(&headers) {
        return refuse(e);
    }
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return refuse(ApiError::form("export form", e)),
    };
    if let Err(e) = csrf::check_token(&viewer.page.csrf, &form.csrf) {
        return refuse(e);
    }
    if form.q.trim().is_empty() || form.q.len() > crate::api::search::MAX_QUERY_BYTES {
        return refuse(ApiError::bad_request("the export needs the query of a search"));
    }
    let query = match Query::parse(&form.q) {
        Ok(q) => q,
        Err(e) => return refuse(ApiError::store(e.into())),
    };
    let slot = match ExportSlot::take(&viewer.caller.user) {
        Ok(slot) => slot,
        Err(NoPlace::Yours) => {
            return refuse(ApiError::busy(
                "your previous export is still being written; try again once it is done",
                10,
            ))
        }
        Err(NoPlace::All) => {
            return refuse(ApiError::busy(
                format!("{MAX_RUNNING_EXPORTS} exports are being written; try again in a moment"),
                10,
            ))
        }
    };
    let store = state.store.clone();
    let caller = viewer.caller;
    let written = blocking(move || {
        let _slot = slot;
        let seqs = selected_deliveries(
            |options| store.search_within(&caller.principal, &query, options, &Budget::default()),
            Some(MAX_WEB_EXPORT),
        )
        .map_err(ApiError::store)?;
        let request = BundleRequest {
            selection: ExportSelection::Filter {
                query: form.q.clone(),
                principal: format!("{} (web)", caller.user),
            },
            seqs,
            exported_by: format!("{} (web, {})", caller.user, caller.client),
            location: String::new(),
            consistency_from: Vec::new(),
            per_volume: 0,
        };
        let mut file = tempfile::tempfile_in(&store.layout().dir)
            .map_err(|e| ApiError::unavailable(format!("no room for the export: {e}")))?;
        let summary = store
            .export_bundle(&request, &mut file)
            .map_err(ApiError::store)?;
        let (sha256, bytes) = digest(&mut file)?;
        let target = format!(
            "web bundle {} messages {} tree size {} sha256 {sha256}",
            request.selection.describe(),
            summary.manifest.message_count,
            summary.manifest.tree_size,
        );
        // No bundle leaves without its record.
        store
            .append_audit(&AuditEvent::new(
                &caller.user,
                "export",
                query_text(&target),
                &caller.client.to_string(),
            ))
            .map_err(ApiError::store)?;
        Ok((file, bytes))
    })
    .await;
    let (file, bytes) = match written {
        Ok(w) => w,
        Err(e) => return refuse(e),
    };
    let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let mut response = (StatusCode::OK, Body::from_stream(chunks(file))).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"mailvault-export-{day}.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The SHA-256 and length of the file, read from its start; leaves it at its start.
fn digest(file: &mut std::fs::File) -> Result<(String, u64), ApiError> {
    let io = |e: std::io::Error| ApiError::unavailable(format!("the export could not be read back: {e}"));
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(file, &mut hasher).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok((archive_core::export::bundle::hex(&hasher.finalize()), bytes))
}

/// The file's bytes in chunks, each read on a blocking thread; the file is removed by the
/// system when the stream (and with it the last handle) is dropped.
fn chunks(file: std::fs::File) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await;
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok(buf), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(_) => Some((
                Err(std::io::Error::other("the export stream's reader failed")),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_exports_run_one_per_user_and_a_finished_one_makes_room() {
        let first = ExportSlot::take("alice").expect("first");
        assert_eq!(
            ExportSlot::take("alice").err(),
            Some(NoPlace::Yours),
            "alice's second"
        );
        let second = ExportSlot::take("bob").expect("second");
        assert_eq!(
            ExportSlot::take("carol").err(),
            Some(NoPlace::All),
            "a third waits for a place"
        );
        drop(first);
        let third = ExportSlot::take("alice").expect("room again");
        drop((second, third));
        assert_eq!(RUNNING_EXPORTS.load(Ordering::SeqCst), 0);
        assert_eq!(EXPORTING_USERS.held_by("alice"), 0);
    }
}
