//! Facets of a search: its matching messages counted by year and month (of the date hits show
//! and sort by) and by sender domain, each bucket with the query clause that narrows the
//! search to exactly that bucket. Counted in the same pass as the total (a collector over the
//! `date` and `from_domain` fast fields), within the search's budget; docs/SEARCH.md §Facets.

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentReader};

use super::query::{Node, Query};

/// Years shown, newest first.
pub const YEARS_SHOWN: usize = 50;
/// Months shown, newest first.
pub const MONTHS_SHOWN: usize = 24;
/// Sender domains shown, most messages first.
pub const DOMAINS_SHOWN: usize = 20;
/// Distinct sender domains counted per search: beyond, a domain not seen yet counts as
/// "other" and the facets say they are not exact (memory stays bounded on hostile archives).
pub const MAX_DOMAINS: usize = 100_000;
/// Distinct months counted per search (1970–9999 fits).
pub const MAX_MONTHS: usize = 100_000;

/// The facets of one search, over every matching message in the principal's scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Facets {
    /// Whether every count is complete. `false` only when more than [`MAX_DOMAINS`] distinct
    /// sender domains (or [`MAX_MONTHS`] months) matched: then a domain first met beyond
    /// that is counted in `other_sender_domains` and may be missing from the list. The
    /// counts shown are exact either way.
    pub exact: bool,
    /// Matching messages per year (UTC), newest first, at most [`YEARS_SHOWN`].
    pub years: Vec<Bucket>,
    /// Matching messages per month (UTC, `YYYY-MM`), newest first, at most [`MONTHS_SHOWN`].
    pub months: Vec<Bucket>,
    /// Matching messages per sender domain (the first From address's, else Sender's), most
    /// first (ties by name), at most [`DOMAINS_SHOWN`].
    pub sender_domains: Vec<Bucket>,
    /// Matching messages whose sender domain is not listed, or that have none.
    pub other_sender_domains: u64,
}

/// One facet value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// `2024`, `2024-03`, or a domain.
    pub value: String,
    /// Matching messages in this bucket.
    pub count: u64,
    /// The query clause that selects exactly this bucket (`after:2023-12-31
    /// before:2025-01-01`, `fromdomain:example.com`); `None` when the language cannot say it
    /// (a domain with a `"` in it, a year outside 1–9999). See [`narrow`].
    pub clause: Option<String>,
}

/// `query` narrowed by `clause` (a bucket's): the query text a facet link searches. The
/// query is put in parentheses only when its top level is an OR, so narrowing again and
/// again does not nest; a clause already among the query's words is not added twice.
pub fn narrow(query: &str, clause: &str) -> String {
    let query = query.trim();
    let Ok(parsed) = Query::parse(query) else {
        return format!("({query}) {clause}");
    };
    let conjuncts = |node: &Node| match node {
        Node::And(parts) => parts.clone(),
        other => vec![other.clone()],
    };
    let have = conjuncts(parsed.root());
    if let Ok(c) = Query::parse(clause) {
        if conjuncts(c.root()).iter().all(|part| have.contains(part)) {
            return query.to_string();
        }
    }
    match parsed.root() {
        Node::Or(_) => format!("({query}) {clause}"),
        _ => format!("{query} {clause}"),
    }
}

/// The clause selecting the UTC days `first` ..= the day before `next` (`(y, m, d)`).
fn day_range(first: (i64, u32, u32), next: (i64, u32, u32)) -> Option<String> {
    let (y, m, d) = civil_from_days(days_from_civil(first.0, first.1, first.2) - 1);
    let in_range = |y: i64| (1..=9999).contains(&y);
    if !in_range(first.0) {
        return None;
    }
    // after:D is "from the day after D": the day before the first day, unless that is year 0.
    let after = in_range(y).then(|| format!("after:{y:04}-{m:02}-{d:02}"));
    let before = in_range(next.0).then(|| format!("before:{:04}-{:02}-{:02}", next.0, next.1, next.2));
    match (after, before) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) => None,
    }
}

fn year_clause(year: i64) -> Option<String> {
    day_range((year, 1, 1), (year + 1, 1, 1))
}

fn month_clause(year: i64, month: u32) -> Option<String> {
    let next = if month == 12 {
        (year + 1, 1, 1)
    } else {
        (year, month + 1, 1)
    };
    day_range((year, month, 1), next)
}

/// The `fromdomain:` clause for `domain`, quoted when it has characters that end a word.
fn domain_clause(domain: &str) -> Option<String> {
    if domain.is_empty() || domain.contains('"') {
        return None;
    }
    if domain.chars().any(|c| c.is_whitespace() || c == '(' || c == ')') {
        Some(format!("fromdomain:\"{domain}\""))
    } else {
        Some(format!("fromdomain:{domain}"))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// A month as one number: `year * 12 + month - 1`.
fn month_key(year: i64, month: u32) -> i64 {
    year.saturating_mul(12).saturating_add(i64::from(month) - 1)
}

fn key_month(key: i64) -> (i64, u32) {
    (key.div_euclid(12), (key.rem_euclid(12) + 1) as u32)
}

/// Counts facets of every document the search matches (use next to `Count` in one pass).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FacetCollector;

/// What one segment counted.
pub(crate) struct SegmentCounts {
    months: HashMap<i64, u64>,
    domains: Vec<(String, u64)>,
    /// Documents without a sender domain (or whose domain could not be read back).
    no_domain: u64,
    exact: bool,
}

/// The counts of one segment: months by a run cache (documents come in index order, which
/// is mostly log order, so consecutive ones tend to share a month), domains by ordinal.
pub(crate) struct SegmentFacets {
    dates: Column<i64>,
    domains: Option<StrColumn>,
    by_ord: Vec<u32>,
    no_domain: u64,
    months: HashMap<i64, u64>,
    exact: bool,
    /// The month of the current run: `[lo, hi)` in Unix seconds, its key, documents in it.
    lo: i64,
    hi: i64,
    key: i64,
    run: u64,
}

impl Collector for FacetCollector {
    type Fruit = Facets;
    type Child = SegmentFacets;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<SegmentFacets> {
        let domains = segment.fast_fields().str("from_domain")?;
        // One counter per distinct domain of the segment: bounded by the segment, not the query.
        let by_ord = vec![0; domains.as_ref().map_or(0, |d| d.num_terms())];
        Ok(SegmentFacets {
            dates: segment.fast_fields().i64("date")?,
            domains,
            by_ord,
            no_domain: 0,
            months: HashMap::new(),
            exact: true,
            lo: 0,
            hi: 0,
            key: 0,
            run: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentCounts>) -> tantivy::Result<Facets> {
        Ok(merge(fruits))
    }
}

impl SegmentFacets {
    fn flush(&mut self) {
        if self.run == 0 {
            return;
        }
        let full = self.months.len() >= MAX_MONTHS;
        match self.months.get_mut(&self.key) {
            Some(n) => *n += self.run,
            None if !full => {
                self.months.insert(self.key, self.run);
            }
            None => self.exact = false,
        }
        self.run = 0;
    }

    fn start_month(&mut self, date: i64) {
        let (y, m, _) = civil_from_days(date.div_euclid(86_400));
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        self.key = month_key(y, m);
        self.lo = days_from_civil(y, m, 1).saturating_mul(86_400);
        self.hi = days_from_civil(ny, nm, 1).saturating_mul(86_400);
    }
}

impl SegmentCollector for SegmentFacets {
    type Fruit = SegmentCounts;

    fn collect(&mut self, doc: DocId, _: Score) {
        // Every document has a date; clamped so day arithmetic cannot overflow.
        let date = self.dates.first(doc).unwrap_or(0).clamp(-(1 << 48), 1 << 48);
        if date < self.lo || date >= self.hi {
            self.flush();
            self.start_month(date);
        }
        self.run += 1;
        match self.domains.as_ref().and_then(|d| d.ords().first(doc)) {
            Some(ord) => match self.by_ord.get_mut(ord as usize) {
                Some(n) => *n += 1,
                None => self.no_domain += 1,
            },
            None => self.no_domain += 1,
        }
    }

    fn harvest(mut self) -> SegmentCounts {
        self.flush();
        let mut ords = Vec::new();
        let mut counts = Vec::new();
        for (ord, n) in self.by_ord.iter().enumerate() {
            if *n > 0 {
                ords.push(ord as u64);
                counts.push(u64::from(*n));
            }
        }
        let mut names = Vec::with_capacity(ords.len());
        let read = match &self.domains {
            // Ordinals in order: the dictionary is read once, sequentially.
            Some(column) => column
                .dictionary()
                .sorted_ords_to_term_cb(&ords, |bytes| {
                    names.push(String::from_utf8_lossy(bytes).into_owned())
                })
                .unwrap_or(false),
            None => ords.is_empty(),
        };
        let mut no_domain = self.no_domain;
        if !read || names.len() != counts.len() {
            // Not expected from a sound index; the messages still count, as "other".
            no_domain += counts.iter().sum::<u64>();
            names.clear();
            counts.clear();
        }
        SegmentCounts {
            months: self.months,
            domains: names.into_iter().zip(counts).collect(),
            no_domain,
            exact: self.exact,
        }
    }
}

/// Sums the segments' counts and keeps what is shown.
fn merge(fruits: Vec<SegmentCounts>) -> Facets {
    let mut exact = true;
    let mut months: HashMap<i64, u64> = HashMap::new();
    let mut domains: HashMap<String, u64> = HashMap::new();
    let mut other = 0u64;
    for fruit in fruits {
        exact &= fruit.exact;
        other += fruit.no_domain;
        for (key, n) in fruit.months {
            let full = months.len() >= MAX_MONTHS;
            match months.get_mut(&key) {
                Some(m) => *m += n,
                None if !full => {
                    months.insert(key, n);
                }
                None => exact = false,
            }
        }
        for (name, n) in fruit.domains {
            let full = domains.len() >= MAX_DOMAINS;
            match domains.get_mut(&name) {
                Some(m) => *m += n,
                None if !full => {
                    domains.insert(name, n);
                }
                None => {
                    exact = false;
                    other += n;
                }
            }
        }
    }
    let mut years: HashMap<i64, u64> = HashMap::new();
    for (key, n) in &months {
        *years.entry(key_month(*key).0).or_default() += n;
    }
    let mut years: Vec<(i64, u64)> = years.into_iter().collect();
    years.sort_unstable_by_key(|y| std::cmp::Reverse(y.0));
    let mut months: Vec<(i64, u64)> = months.into_iter().collect();
    months.sort_unstable_by_key(|m| std::cmp::Reverse(m.0));
    let mut domains: Vec<(String, u64)> = domains.into_iter().collect();
    domains.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if domains.len() > DOMAINS_SHOWN {
        other += domains[DOMAINS_SHOWN..].iter().map(|(_, n)| n).sum::<u64>();
        domains.truncate(DOMAINS_SHOWN);
    }
    Facets {
        exact,
        years: years
            .into_iter()
            .take(YEARS_SHOWN)
            .map(|(y, count)| Bucket {
                value: format!("{y:04}"),
                count,
                clause: year_clause(y),
            })
            .collect(),
        months: months
            .into_iter()
            .take(MONTHS_SHOWN)
            .map(|(key, count)| {
                let (y, m) = key_month(key);
                Bucket {
                    value: format!("{y:04}-{m:02}"),
                    count,
                    clause: month_clause(y, m),
                }
            })
            .collect(),
        sender_domains: domains
            .into_iter()
            .map(|(value, count)| Bucket {
                clause: domain_clause(&value),
                value,
                count,
            })
            .collect(),
        other_sender_domains: other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_agree_with_jiff() {
        let mut z: i64 = -800_000;
        while z < 3_000_000 {
            let date = jiff::Timestamp::from_second(z * 86_400)
                .ok()
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
            if let Some(d) = date {
                let (y, m, dd) = civil_from_days(z);
                assert_eq!(
                    (y, m, dd),
                    (i64::from(d.year()), d.month() as u32, d.day() as u32),
                    "day {z}"
                );
                assert_eq!(days_from_civil(y, m, dd), z);
            }
            z += 997;
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1), 29);
    }

    #[test]
    fn clauses_say_exactly_the_bucket() {
        assert_eq!(year_clause(2024).unwrap(), "after:2023-12-31 before:2025-01-01");
        assert_eq!(
            month_clause(2024, 3).unwrap(),
            "after:2024-02-29 before:2024-04-01"
        );
        assert_eq!(
            month_clause(2023, 12).unwrap(),
            "after:2023-11-30 before:2024-01-01"
        );
        assert_eq!(
            month_clause(2023, 1).unwrap(),
            "after:2022-12-31 before:2023-02-01"
        );
        assert_eq!(year_clause(9999).unwrap(), "after:9998-12-31");
        assert_eq!(year_clause(1).unwrap(), "before:0002-01-01");
        assert_eq!(year_clause(0), None);
        assert_eq!(year_clause(10_000), None);
        assert_eq!(domain_clause("example.com").unwrap(), "fromdomain:example.com");
        assert_eq!(domain_clause("a b(c)").unwrap(), "fromdomain:\"a b(c)\"");
        assert_eq!(domain_clause("a\"b"), None);
        // Every clause parses.
        for c in [year_clause(2024), month_clause(2024, 2), domain_clause("x y")] {
            Query::parse(&c.unwrap()).unwrap();
        }
    }

    #[test]
    fn narrowing_keeps_the_query_and_does_not_nest() {
        assert_eq!(narrow("invoice", "fromdomain:a.de"), "invoice fromdomain:a.de");
        assert_eq!(narrow("a OR b", "fromdomain:a.de"), "(a OR b) fromdomain:a.de");
        assert_eq!(
            narrow("(a OR b) c", "fromdomain:a.de"),
            "(a OR b) c fromdomain:a.de"
        );
        assert_eq!(narrow("-spam", "fromdomain:a.de"), "-spam fromdomain:a.de");
        assert_eq!(
            narrow("x fromdomain:a.de", "fromdomain:a.de"),
            "x fromdomain:a.de"
        );
        // Only a clause the whole query already requires is left out.
        assert_eq!(
            narrow("x OR fromdomain:a.de", "fromdomain:a.de"),
            "(x OR fromdomain:a.de) fromdomain:a.de"
        );
        assert_eq!(
            narrow("x ( y OR fromdomain:a.de )", "fromdomain:a.de"),
            "x ( y OR fromdomain:a.de ) fromdomain:a.de"
        );
        let year = year_clause(2024).unwrap();
        assert_eq!(narrow(&format!("x {year}"), &year), format!("x {year}"));
        let mut q = "a OR b".to_string();
        for y in 2000..2100 {
            q = narrow(&q, &year_clause(y).unwrap());
        }
        Query::parse(&q).expect("narrowed 100 times, still a query");
    }

    #[test]
    fn merging_sums_segments_ranks_domains_and_caps_the_list() {
        let seg = |months: &[(i64, u64)], domains: &[(&str, u64)], none| SegmentCounts {
            months: months.iter().copied().collect(),
            domains: domains.iter().map(|(d, n)| (d.to_string(), *n)).collect(),
            no_domain: none,
            exact: true,
        };
        let mut many: Vec<(String, u64)> = (0..30).map(|i| (format!("d{i:02}.de"), 1)).collect();
        many.push(("big.de".into(), 5));
        let facets = merge(vec![
            seg(
                &[(month_key(2024, 3), 3), (month_key(2023, 1), 1)],
                &[("a.de", 2)],
                2,
            ),
            seg(&[(month_key(2024, 3), 2)], &[("a.de", 1), ("b.de", 1)], 0),
            SegmentCounts {
                months: HashMap::new(),
                domains: many,
                no_domain: 0,
                exact: true,
            },
        ]);
        assert!(facets.exact);
        let pairs = |b: &[Bucket]| b.iter().map(|b| (b.value.clone(), b.count)).collect::<Vec<_>>();
        assert_eq!(pairs(&facets.years), [("2024".into(), 5), ("2023".into(), 1)]);
        assert_eq!(
            pairs(&facets.months),
            [("2024-03".into(), 5), ("2023-01".into(), 1)]
        );
        assert_eq!(facets.sender_domains.len(), DOMAINS_SHOWN);
        assert_eq!(
            pairs(&facets.sender_domains[..3]),
            [("big.de".into(), 5), ("a.de".into(), 3), ("b.de".into(), 1)]
        );
        // 31 one-message domains (b.de first by name), 18 shown: 13 others, plus the 2
        // messages without a domain.
        assert_eq!(facets.other_sender_domains, 15);
    }
}
