//! The web front door for auditors, postmasters and scripts, over `archive_core`'s search and
//! access model: the operator's [`admin`] endpoints, and (on the web listener, [`start`]) a
//! password login with sessions, HTTP Basic and bearer-token auth for scripts, and the JSON
//! API under `/api/v1` (docs/API.md), and the pages for people (docs/WEB.md).
//!
//! - [`config`]: the `[web]` settings;
//! - `server`: the listener (HTTP or HTTPS), connection limits, shutdown;
//! - `auth`: who is asking ([`auth::Caller`]): Basic, bearer token or session;
//! - `session`: the bounded in-memory session store; `csrf`: cross-site checks;
//! - `login`: the login and logout forms;
//! - `search_pool`: the threads searches run on, and their bounded queue;
//! - `api/`: the JSON API, one module per group; `error`: its JSON errors;
//! - `pages/`: the server-rendered pages (askama templates in `templates/`, our own CSS and
//!   script in `static/`), `i18n/`: their words in English and German.
//!
//! No access decision is made here: every scope check is archive-core's
//! (`Store::search`, `Store::message_for`, `Principal::may_read_*`), and every login goes
//! through its `LoginGate`.

pub mod admin;
mod api;
pub mod auth;
pub mod config;
mod csrf;
pub mod error;
mod i18n;
mod login;
mod pages;
mod search_pool;
mod server;
mod session;

pub use config::WebConfig;
pub use server::{app, start, Listening, WebError};
