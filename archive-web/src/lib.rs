//! The web search UI and JSON API for auditors and postmasters, over `archive_core`'s search
//! and access model.
//!
//! Built so far: [`admin`], the operator's HTTP endpoints (`/metrics`, `/healthz`,
//! `/readyz`). The search UI is not built yet; the crate exists so the workspace has its
//! final shape and the dependency direction (front door → core) is fixed from the start.

pub mod admin;
