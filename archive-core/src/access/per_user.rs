//! Per-user shares of a limited resource: how many IMAP sessions a user has logged in, how
//! many web searches a user has queued or running. Front doors hold a [`UserShare`] while the
//! thing it counts lives; dropping it gives the place back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many places each user holds, at most `limit` each. Users holding none take no memory.
#[derive(Debug)]
pub struct PerUser {
    held: Mutex<HashMap<String, usize>>,
    limit: usize,
}

/// One place of a user's; dropping it frees the place.
#[derive(Debug)]
pub struct UserShare {
    per_user: Arc<PerUser>,
    name: String,
}

impl PerUser {
    /// Places of at most `limit` per user.
    pub fn new(limit: usize) -> PerUser {
        PerUser {
            held: Mutex::default(),
            limit,
        }
    }

    /// The most places one user may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One more place for `name`, if they hold fewer than the limit.
    pub fn enter(self: &Arc<Self>, name: &str) -> Option<UserShare> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(name.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(UserShare {
            per_user: Arc::clone(self),
            name: name.to_string(),
        })
    }

    /// The places `name` holds now.
    pub fn held_by(&self, name: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(name).copied().unwrap_or(0)
    }
}

impl Drop for UserShare {
    fn drop(&mut self) {
        let mut held = self.per_user.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_holds_at_most_the_limit_and_dropping_frees_a_place() {
        let per_user = Arc::new(PerUser::new(2));
        let a1 = per_user.enter("alice").unwrap();
        let _a2 = per_user.enter("alice").unwrap();
        assert!(per_user.enter("alice").is_none(), "a third place for alice");
        let _b = per_user.enter("bob").expect("bob has his own places");
        drop(a1);
        assert_eq!(per_user.held_by("alice"), 1);
        assert!(per_user.enter("alice").is_some());
        assert_eq!(per_user.held_by("carol"), 0);
    }
}
