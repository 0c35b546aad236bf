//! API tokens: what scripts send instead of a password (`Authorization: Bearer …` on the web
//! API). `mailvault user token NAME` makes one; the users file keeps only its SHA-256.
//!
//! A token is 256 random bits from the system's source, so it cannot be guessed and a
//! plain SHA-256 of it cannot be inverted: unlike a password, it needs no slow, salted hash
//! (Argon2id would cost every API request a noticeable fraction of a second for nothing).
//! Lookup is by hash, so the stored value never has to be compared with the secret itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::names::login_key;
use super::users::{AuthFailure, Authenticated, Users};
use crate::{Error, Result};

/// What every token starts with, so that one pasted into the wrong place is recognisable.
pub const TOKEN_PREFIX: &str = "mvt_";

/// A token as the users file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// Short public name of the token: the first 8 hex digits of its hash (for listings and
    /// the audit trail; it reveals nothing usable).
    pub id: String,
    /// SHA-256 of the whole token text, lower-case hex.
    pub sha256: String,
    /// When it was made.
    pub created: Timestamp,
    /// When it was revoked (`mailvault user token NAME --revoke ID`); a revoked token logs
    /// nobody in. It stays listed, as users stay when disabled: nothing is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Timestamp>,
}

/// Now, to the second (the users file's precision).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// SHA-256 of a token's text, lower-case hex.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token: [`TOKEN_PREFIX`] and 32 random bytes in URL-safe base64.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::System(format!("no random bytes for a token: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

impl Users {
    /// Gives user `name` a new API token; returns the token text (shown once, never stored)
    /// and its id. A user may have several (one per script).
    pub fn add_token(&mut self, name: &str) -> Result<(String, String)> {
        let token = new_token()?;
        let sha256 = digest(&token);
        let id = sha256[..8].to_string();
        let key = login_key(name);
        let user = self.by_name.get_mut(&key).ok_or(Error::NoSuchUser(key))?;
        user.tokens.push(StoredToken {
            id: id.clone(),
            sha256,
            created: now(),
            revoked: None,
        });
        self.changed = true;
        Ok((token, id))
    }

    /// Revokes user `name`'s token `id` (as listed: the first hex digits of its hash). A
    /// token already revoked, or one the user does not have, is refused and nothing changes.
    pub fn revoke_token(&mut self, name: &str, id: &str) -> Result<()> {
        let key = login_key(name);
        let user = self.by_name.get_mut(&key).ok_or(Error::NoSuchUser(key))?;
        let stored = user
            .tokens
            .iter_mut()
            .find(|t| t.id == id.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::Rejected(format!(
                    "{} has no token {id:?} (`mailvault user token {} --list`)",
                    user.name, user.name
                ))
            })?;
        if let Some(when) = stored.revoked {
            return Err(Error::Rejected(format!(
                "token {id} of {} was already revoked at {when}",
                user.name
            )));
        }
        stored.revoked = Some(now());
        self.changed = true;
        Ok(())
    }

    /// Checks a token: the user that has it, if they are enabled, with the token's id.
    pub fn authenticate_token(
        &self,
        token: &str,
    ) -> std::result::Result<(Authenticated, String), AuthFailure> {
        let token = token.trim();
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthFailure::UnknownUser);
        }
        let sha256 = digest(token);
        for user in self.iter() {
            if let Some(stored) = user.tokens.iter().find(|t| t.sha256 == sha256) {
                if stored.revoked.is_some() {
                    return Err(AuthFailure::Revoked);
                }
                if user.disabled() {
                    return Err(AuthFailure::Disabled);
                }
                let who = Authenticated {
                    name: user.name().to_string(),
                    principal: user.role().principal(),
                };
                return Ok((who, stored.id.clone()));
            }
        }
        Err(AuthFailure::UnknownUser)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Role, UserRecord};
    use super::*;

    #[test]
    fn a_token_logs_its_user_in_until_the_user_is_disabled() {
        let mut users = Users::default();
        let alice =
            UserRecord::new("alice", Role::user(["alice@example.com"]).unwrap(), "pw pw pw pw").unwrap();
        users.add(alice).unwrap();
        let (token, id) = users.add_token("Alice").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40, "{token}");
        let stored = &users.get("alice").unwrap().tokens[0];
        assert_ne!(stored.sha256, token, "only the hash is kept");
        assert_eq!(stored.id, id);
        let (who, used) = users.authenticate_token(&token).unwrap();
        assert_eq!((who.name.as_str(), used.as_str()), ("alice", id.as_str()));
        assert_eq!(
            users.authenticate_token(&format!("{token}x")),
            Err(AuthFailure::UnknownUser)
        );
        assert_eq!(
            users.authenticate_token("pw pw pw pw"),
            Err(AuthFailure::UnknownUser)
        );
        users.set_disabled("alice", true).unwrap();
        assert_eq!(users.authenticate_token(&token), Err(AuthFailure::Disabled));
        assert!(users.add_token("bob").is_err());
    }

    #[test]
    fn a_revoked_token_logs_nobody_in_and_the_others_still_work() {
        let mut users = Users::default();
        let alice =
            UserRecord::new("alice", Role::user(["alice@example.com"]).unwrap(), "pw pw pw pw").unwrap();
        users.add(alice).unwrap();
        let (first, first_id) = users.add_token("alice").unwrap();
        let (second, _) = users.add_token("alice").unwrap();
        users
            .revoke_token("alice", &first_id.to_ascii_uppercase())
            .unwrap();
        assert_eq!(users.authenticate_token(&first), Err(AuthFailure::Revoked));
        assert_eq!(users.authenticate_token(&second).unwrap().0.name, "alice");
        let again = users.revoke_token("alice", &first_id).unwrap_err().to_string();
        assert!(again.contains("already revoked"), "{again}");
        assert!(users.revoke_token("alice", "00000000").is_err());
        assert!(users.revoke_token("bob", &first_id).is_err());
        // Still listed, with the time it was revoked: nothing is removed.
        let tokens = users.get("alice").unwrap().tokens();
        assert_eq!(tokens.len(), 2);
        assert!(tokens[0].revoked.is_some() && tokens[1].revoked.is_none());
        // The field survives the file's round trip, and files without it still load.
        let json = serde_json::to_string(&tokens[0]).unwrap();
        let back: StoredToken = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, &tokens[0]);
        let old: StoredToken =
            serde_json::from_str(r#"{"id":"abcd0123","sha256":"00","created":"2026-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(old.revoked, None);
    }
}
