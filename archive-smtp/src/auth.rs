//! AUTH PLAIN for relays outside `allow`: the credentials go through the store's
//! [`LoginGate`] like every other front door's (rate limit, users file, audit record), on a
//! blocking thread, at most a few at a time. Only users named in `intake.relay_users` may
//! deliver; anyone else who logs in gets the same answer as a wrong password, and the audit
//! trail says why.

use archive_core::access::LoginRefused;
use archive_core::audit::AuditEvent;
use base64::Engine;

use crate::session::{Input, Session};

/// What the client is told for every failed login: wrong password, unknown or disabled name,
/// or a user who is not a relay.
const AUTH_FAILED: &str = "authentication credentials invalid";

impl Session {
    /// AUTH: checks the preconditions, then the initial response or asks for it.
    pub(crate) async fn auth(&mut self, mechanism: u64, initial: &str) {
        if self.ctx.config.relay_users.is_empty() {
            return self.reply(502, "5.5.1", "AUTH is not enabled");
        }
        if self.user.is_some() {
            return self.reply(503, "5.5.1", "already authenticated");
        }
        if self.tx.is_some() {
            return self.reply(503, "5.5.1", "AUTH not allowed during a transaction");
        }
        if mechanism != smtp_proto::AUTH_PLAIN {
            return self.reply(504, "5.5.4", "only AUTH PLAIN is supported");
        }
        if self.tls.is_empty() && !self.trusted {
            return self.reply(538, "5.7.11", "encryption required: STARTTLS first");
        }
        if initial.is_empty() {
            self.input = Input::AuthResponse;
            self.out.extend_from_slice(b"334 \r\n");
            return;
        }
        self.auth_plain(initial.as_bytes()).await;
    }

    /// Checks an AUTH PLAIN response (`[authzid] NUL user NUL password`, base64).
    pub(crate) async fn auth_plain(&mut self, response: &[u8]) {
        let text = String::from_utf8_lossy(response);
        let text = text.trim();
        if text == "*" {
            return self.reply(501, "5.0.0", "authentication cancelled");
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text) else {
            return self.reply(501, "5.5.2", "cannot decode the response");
        };
        let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
        let (login, password) = match parts.as_slice() {
            [_authzid, login, password] => (
                String::from_utf8_lossy(login).into_owned(),
                String::from_utf8_lossy(password).into_owned(),
            ),
            _ => return self.reply(501, "5.5.2", "malformed PLAIN response"),
        };
        // Argon2 runs on a blocking thread, and only as many at once as there are cores:
        // a crowd of AUTHs must neither stall the async workers nor take all memory.
        let Ok(permit) = self.ctx.auth_permits.clone().acquire_owned().await else {
            return self.reply(454, "4.7.0", "authentication unavailable, try again later");
        };
        let ctx = self.ctx.clone();
        let client = self.peer.ip();
        let door = self.protocol.name();
        let typed = login.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let store = &ctx.store;
            let who = ctx.gate.login(store, &typed, &password, client, door)?;
            if ctx.config.is_relay_user(&who.name) {
                return Ok(who.name);
            }
            // The gate recorded a login; the trail must also say it was turned away.
            let event = AuditEvent::login_failed(&who.name, door, client, "not-a-relay");
            store
                .append_audit(&event)
                .map_err(|e| LoginRefused::Unavailable(e.to_string()))?;
            tracing::info!(user = %who.name, "smtp login of a user who is not a relay");
            Err(LoginRefused::Failed)
        })
        .await;
        match outcome {
            Ok(Ok(name)) => {
                tracing::info!(peer = %self.peer, user = %name, "relay authenticated");
                self.user = Some(name);
                self.reply(235, "2.7.0", "authenticated");
            }
            Ok(Err(LoginRefused::Failed)) => {
                tracing::warn!(peer = %self.peer, login = %login, "relay authentication failed");
                self.reply(535, "5.7.8", AUTH_FAILED);
            }
            Ok(Err(LoginRefused::RateLimited(wait))) => {
                tracing::warn!(peer = %self.peer, login = %login, "relay authentication rate-limited");
                self.reply(454, "4.7.0", &wait.to_string());
            }
            Ok(Err(LoginRefused::Unavailable(why))) => {
                tracing::error!(error = %why, "relay authentication unavailable");
                self.reply(454, "4.7.0", "authentication unavailable, try again later");
            }
            Err(e) => {
                tracing::error!(error = %e, "relay authentication task failed");
                self.reply(454, "4.7.0", "authentication unavailable, try again later");
            }
        }
    }
}
