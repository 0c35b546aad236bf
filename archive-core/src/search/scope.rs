//! Who is asking, and what they may see. Every search runs as a [`Principal`]; the scope is
//! applied inside the index query (so counts, pages and cursors never include mail outside
//! it) and again to each hit's envelope data (so a hit never shows a blind copy the
//! principal may not know about). docs/SEARCH.md §Scope states the rules.

use std::collections::BTreeSet;

use tantivy::query::{ConstScoreQuery, Query as TantivyQuery, TermSetQuery};
use tantivy::Term;

use super::document::{Delivery, Summary};
use super::extract::{normalize_address, Mailbox};
use super::schema::{view_term, Fields};
use crate::{Error, Result};

/// The party a search runs as. Serializable so a front door can keep it in its own
/// server-side session state (never in anything a client holds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Principal {
    /// A user: sees mail where one of their addresses is a header sender/recipient
    /// (From, Sender, To, Cc, Bcc) or an envelope sender/recipient of some delivery.
    User {
        /// Lower-cased addresses, never empty.
        addresses: BTreeSet<String>,
    },
    /// An auditor: sees every message in scope, with every delivery's full envelope.
    Auditor {
        /// `None`: the whole archive. Otherwise: messages with a sender or recipient address
        /// (header or envelope) in one of these domains or their subdomains.
        domains: Option<BTreeSet<String>>,
    },
}

impl Principal {
    /// A user with these addresses (at least one).
    pub fn user<S: AsRef<str>>(addresses: impl IntoIterator<Item = S>) -> Result<Principal> {
        let addresses: BTreeSet<String> = addresses
            .into_iter()
            .map(|a| normalize_address(a.as_ref()))
            .filter(|a| !a.is_empty())
            .collect();
        if addresses.is_empty() {
            return Err(Error::Rejected("a user needs at least one address".into()));
        }
        if let Some(bad) = addresses.iter().find(|a| !a.contains('@')) {
            return Err(Error::Rejected(format!("{bad:?} is not a mail address")));
        }
        Ok(Principal::User { addresses })
    }

    /// An auditor of these domains (at least one).
    pub fn auditor_of<S: AsRef<str>>(domains: impl IntoIterator<Item = S>) -> Result<Principal> {
        let domains: BTreeSet<String> = domains
            .into_iter()
            .map(|d| {
                d.as_ref()
                    .trim()
                    .trim_start_matches('@')
                    .trim_end_matches('.')
                    .to_lowercase()
            })
            .filter(|d| !d.is_empty())
            .collect();
        if domains.is_empty() {
            return Err(Error::Rejected(
                "an auditor scope needs at least one domain".into(),
            ));
        }
        Ok(Principal::Auditor {
            domains: Some(domains),
        })
    }

    /// An auditor of the whole archive (the local operator).
    pub fn auditor_all() -> Principal {
        Principal::Auditor { domains: None }
    }

    /// Whether this is an auditor (of some domains or of everything): auditors may read the
    /// archive's status (counts, sizes, index lag), which says something about all mail.
    pub fn may_read_status(&self) -> bool {
        matches!(self, Principal::Auditor { .. })
    }

    /// Whether this principal may read the access trail. Only an auditor of the whole
    /// archive: the trail names every user and what they searched for, across all domains,
    /// and its events carry no domain to scope them by.
    pub fn may_read_audit_trail(&self) -> bool {
        matches!(self, Principal::Auditor { domains: None })
    }

    /// The user's addresses, or `None` for auditors (who may match any envelope data).
    pub(crate) fn user_addresses(&self) -> Option<&BTreeSet<String>> {
        match self {
            Principal::User { addresses } => Some(addresses),
            Principal::Auditor { .. } => None,
        }
    }

    /// The query restricting results to this principal's scope (`None`: no restriction).
    /// It scores 0 so it never changes relevance order.
    pub(crate) fn scope_query(&self, f: &Fields) -> Option<Box<dyn TantivyQuery>> {
        let (field, values) = match self {
            Principal::User { addresses } => (f.scope_addr, addresses),
            Principal::Auditor { domains: Some(d) } => (f.scope_domain, d),
            Principal::Auditor { domains: None } => return None,
        };
        let terms = values.iter().map(|v| Term::from_field_text(field, v));
        Some(Box::new(ConstScoreQuery::new(
            Box::new(TermSetQuery::new(terms)),
            0.0,
        )))
    }

    /// The `env_view` terms through which this user may match envelope data `value` as
    /// `kind` (`f` sender, `r` recipient, `b` blind recipient, `d` domain).
    pub(crate) fn view_terms(&self, f: &Fields, kind: char, value: &str) -> Vec<Term> {
        self.user_addresses()
            .into_iter()
            .flatten()
            .map(|a| Term::from_field_text(f.env_view, &view_term(a, kind, value)))
            .collect()
    }

    /// The deliveries of a message this principal may see, with the recipients they may see:
    /// auditors see all; a user sees a delivery only if they are its envelope sender (then
    /// with every recipient) or one of its recipients (then with themselves and the
    /// recipients the message's own To/Cc/Bcc headers name, never other blind copies).
    pub(crate) fn visible_deliveries(&self, summary: &Summary) -> Vec<Delivery> {
        let Some(mine) = self.user_addresses() else {
            return summary.deliveries.clone();
        };
        let public = summary.header_recipients();
        summary
            .deliveries
            .iter()
            .filter_map(|d| {
                if mine.contains(&d.mail_from) {
                    return Some(d.clone());
                }
                if !d.recipients.iter().any(|r| mine.contains(r)) {
                    return None;
                }
                let recipients = d
                    .recipients
                    .iter()
                    .filter(|r| mine.contains(*r) || public.contains(r.as_str()))
                    .cloned()
                    .collect();
                Some(Delivery {
                    recipients,
                    ..d.clone()
                })
            })
            .collect()
    }

    /// The hit's Bcc list: the Bcc header plus the blind envelope recipients among the
    /// visible deliveries.
    pub(crate) fn visible_bcc(summary: &Summary, deliveries: &[Delivery]) -> Vec<Mailbox> {
        let public = summary.header_recipients();
        let mut bcc = summary.bcc.clone();
        let mut seen: BTreeSet<String> = bcc.iter().filter_map(|m| m.address.clone()).collect();
        for r in deliveries.iter().flat_map(|d| &d.recipients) {
            if !public.contains(r.as_str()) && seen.insert(r.clone()) {
                bcc.push(Mailbox {
                    name: None,
                    address: Some(r.clone()),
                });
            }
        }
        bcc
    }
}
