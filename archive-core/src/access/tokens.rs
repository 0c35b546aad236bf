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
            created: Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH),
        });
        self.changed = true;
        Ok((token, id))
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
}
