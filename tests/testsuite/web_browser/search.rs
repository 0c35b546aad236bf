//! Searching in the browser: query box, criteria form, pages, sorting, keyboard.

use super::{run_flow, site, text_mail};

/// Mails of the search flow: 30 weekly reports and an invoice with an attachment for alice, one
/// report for carol (alice's searches must not count it).
pub(super) fn mails() -> Vec<(String, Vec<u8>)> {
    let mut mails: Vec<(String, Vec<u8>)> = (1..=30)
        .map(|n| {
            let date = format!("Mon, {n:02} Jun 2026 09:{n:02}:00 +0000");
            let body = format!("Status of week {n}.{}", " Nothing new.".repeat(n));
            (
                format!("report-{n}.eml"),
                text_mail("alice@example.com", &format!("weekly report {n}"), &date, &body),
            )
        })
        .collect();
    mails.push((
        "carol-report.eml".into(),
        text_mail(
            "carol@other.net",
            "weekly report for carol",
            "Tue, 02 Jun 2026 10:00:00 +0000",
            "carol only",
        ),
    ));
    mails.push(("invoice.eml".into(), INVOICE.as_bytes().to_vec()));
    mails
}

/// The invoice: text and a PDF attachment, the start of a thread.
pub(super) const INVOICE: &str = "From: Bob <bob@example.org>\r\nTo: Alice <alice@example.com>\r\n\
Subject: invoice 42 for June\r\nDate: Wed, 01 Jul 2026 08:00:00 +0000\r\nMessage-ID: <invoice-42@example.org>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Hello Alice, the amount is payable by the end of July. Details: https://billing.example.org/42\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice-42.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSVFT0YK\r\n--b--\r\n";

/// The query box (total, URL), page size 25 and the next page by `a[rel=next]` (disjoint pages
/// that together hold all 30 of alice's reports, not carol's), 50 on one page, sorting by size,
/// the criteria form's built query (`from:`, `subject:`, `after:`, `has:attachment`) shown,
/// put in the box and run, a highlighted snippet, a bad query's 400 with the position, and the
/// keyboard: `/` focuses the box, `j`/`k` move the selection, Enter opens it.
#[test]
fn search_pages_and_keyboard() {
    let site = site(&mails());
    let mut env = site.as_user("alice");
    env.push(("REPORTS", "30".into()));
    env.push(("INVOICE_SEQ", site.seq("invoice.eml").to_string()));
    let result = run_flow("search", &site.base_url, &env);
    result.require(&[
        "search.help_examples",
        "search.url_holds_query",
        "search.total",
        "search.page_sizes",
        "search.limit_in_url",
        "search.first_page_size",
        "search.hit_opens",
        "search.cursor_in_url",
        "search.second_page_size",
        "search.pages_disjoint_and_complete",
        "search.last_page_no_next",
        "search.limit_50",
        "search.sort_in_url",
        "search.built_query has from:bob@example.org",
        "search.built_query has has:attachment",
        "search.built_query_in_box",
        "search.criteria_finds_invoice",
        "search.attachment_mark",
        "search.snippet_mark",
        "search.bad_query_400",
        "search.bad_query_position",
        "search.slash_focuses_box",
        "search.j_selects_first",
        "search.j_moves_down",
        "search.k_moves_up",
        "search.enter_opens",
        "search.no_outside_request",
    ]);
}
