"""SEARCH header keys and sent dates as imaplib sees them: driven by
`imaplib_searches_sent_dates_as_written` ($CHECKS=dates) and
`imaplib_searches_header_substrings` ($CHECKS=headers) in tests/imap.rs. Reader's INBOX:

  1 From "Hans Müller" <hans.mueller@…>, To erika@, Subject "A Beautiful World?" (folded),
    X-Extra, Date Sun, 25 Mar 2007 00:00:00 +0200 (24 March in UTC), body with "?"
  2 From =?utf-8?…?= (Jürgen Groß), Subject =?iso-8859-1?…?= (Grüße aus Zürich),
    Cc group2: (foo) ;, Bcc secret@, Date Sat, 24 Mar 2007 23:30:00 -0500 (25 March in UTC)
  3 empty To and Subject, Date garbage (no usable date), body with "="
  4 no Subject, no Date
  5 Date Sun, 25 Mar 2007 23:00:00 EST (a named zone)
  6 Date Sat, 01 Jan 2000
  7 To "Erika Mustermann" <erika@…>, Date Tue, 01 Jan 2030 00:30:00 +0100 (2029 in UTC)

Expected answers are Dovecot 2.3.19's for the same messages, except for messages without a
usable Date (3, 4): Dovecot's SEARCH dates them 1 January 1970; here they are dated by
their INTERNALDATE, as SORT does (docs/SEARCH.md).
"""

import datetime
import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])

m = imaplib.IMAP4("127.0.0.1", PORT)
assert m.login("reader", "reader-pw")[0] == "OK"
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def search(*keys, literal=None):
    """Message numbers matching `keys`; `literal` (UTF-8) is sent as the last argument."""
    if literal is not None:
        m.literal = literal.encode()
        typ, data = m._simple_command("SEARCH", "CHARSET", "UTF-8", *keys)
        typ, data = m._untagged_response(typ, data, "SEARCH")
    else:
        typ, data = m.search(None, *keys)
    assert typ == "OK", (keys, literal, typ, data)
    return [int(x) for x in data[0].split()]


def check(got, expected, what):
    assert got == expected, f"{what}: {got} != {expected}"


def dates():
    """Sent dates: the day written in the Date header, whatever its zone (RFC 3501)."""
    check(search("SENTON", "25-Mar-2007"), [1, 5], "SENTON 25-Mar-2007")
    check(search("SENTON", "24-Mar-2007"), [2], "SENTON 24-Mar-2007")
    check(search("SENTBEFORE", "25-Mar-2007"), [2, 6], "SENTBEFORE 25-Mar-2007")
    check(search("SENTSINCE", "25-Mar-2007"), [1, 3, 4, 5, 7], "SENTSINCE 25-Mar-2007")
    check(search("NOT", "SENTON", "25-Mar-2007"), [2, 3, 4, 6, 7], "NOT SENTON")
    check(search("SENTON", "1-Jan-2030"), [7], "SENTON 1-Jan-2030")
    check(search("SENTON", "31-Dec-2029"), [], "SENTON 31-Dec-2029")
    check(search("SENTON", "1-Jan-2000"), [6], "SENTON 1-Jan-2000")
    check(search("SENTBEFORE", "1-Jan-2000"), [], "SENTBEFORE 1-Jan-2000")
    check(search("SENTSINCE", "2-Jan-2000", "SENTBEFORE", "25-Mar-2007"), [2], "a range")
    check(search("OR", "SENTON", "24-Mar-2007", "SENTON", "1-Jan-2030"), [2, 7], "OR of days")
    # Without a usable Date: the INTERNALDATE's day (UTC).
    typ, data = m.fetch("3", "(INTERNALDATE)")
    internal = data[0].decode().split('"')[1]
    day = datetime.datetime.strptime(internal, "%d-%b-%Y %H:%M:%S %z").strftime("%d-%b-%Y")
    check(search("SENTON", day), [3, 4], f"SENTON {day} (INTERNALDATE)")
    check(search("SENTBEFORE", day), [1, 2, 5, 6], f"SENTBEFORE {day}")


def headers():
    """Header keys: case-insensitive substrings of the decoded, unfolded field."""
    check(search("SUBJECT", '"eautiful worl"'), [1], "SUBJECT substring")
    check(search("SUBJECT", '"beautiful world?"'), [1], "SUBJECT across the fold")
    check(search("SUBJECT", '"?"'), [1], "SUBJECT punctuation")
    check(search("SUBJECT", '"(fwd)"'), [6], "SUBJECT (fwd)")
    check(search("SUBJECT", literal="GRÜßE aus"), [2], "SUBJECT decoded, non-ASCII case")
    check(search("FROM", literal="MÜLLER"), [1], "FROM name")
    check(search("FROM", literal="jürgen groß"), [2], "FROM encoded name")
    check(search("FROM", "hans.mueller@ex"), [1], "FROM part of an address")
    check(search("FROM", "<hans"), [1], "FROM with the bracket")
    check(search("TO", "erika@example.com"), [1, 7], "TO")
    check(search("CC", "group2"), [2], "CC group name")
    check(search("BCC", "secret"), [2], "BCC")
    check(search("HEADER", "X-Extra", "x"), [1], "HEADER any field")
    check(search("HEADER", "x-extra", '"XTRA VAL"'), [1], "HEADER name and value case")
    check(search("HEADER", "Date", "2007"), [1, 2, 5], "HEADER Date")
    check(search("HEADER", "X-Missing", "x"), [], "HEADER absent field")
    # An empty string asks only that the field be there (Dovecot).
    check(search("HEADER", "To", '""'), [1, 3, 7], "HEADER To empty")
    check(search("SUBJECT", '""'), [1, 2, 3, 5, 6, 7], "SUBJECT empty")
    check(search("HEADER", "X-Missing", '""'), [], "HEADER absent field, empty")
    check(search("OR", "SUBJECT", '"?"', "FROM", literal="jürgen"), [1, 2], "OR of scans")
    check(search("SUBJECT", "world", "NOT", "FROM", "hans"), [], "AND NOT")
    check(search("1:2", "SUBJECT", "e"), [1, 2], "with a sequence set")

    # TEXT and BODY: words through the index (stems: "question" finds "Question?")...
    check(search("BODY", "question"), [1, 2], "BODY word")
    check(search("TEXT", "hello", "SUBJECT", "eautiful"), [1], "TEXT word and a header key")
    # Values are words, never the query language's operators.
    check(search("TEXT", '"re:"'), [6], "TEXT re:")
    check(search("TEXT", '"from:hans"'), [], "TEXT from:hans")
    check(search("BODY", '"subject:future"'), [], "BODY subject:future")
    # ...and RFC 3501 substrings of the decoded text (TEXT: every header field too),
    # case-insensitive, inside words and across them, never in someone else's mail.
    check(search("BODY", "ello"), [1], "BODY inside a word")
    check(search("BODY", '"ELLO THE"'), [1], "BODY across words, any case")
    check(search("BODY", '"uestion? y"'), [1], "BODY across punctuation")
    check(search("BODY", '"there.  q"'), [], "BODY spaces are exact")
    check(search("BODY", '"ith equ"'), [3], "BODY between words")
    check(search("BODY", "eautiful"), [], "BODY is not the header")
    check(search("TEXT", "eautiful"), [1], "TEXT inside a subject word")
    check(search("TEXT", '"autiful wor"'), [1], "TEXT across an unfolded subject")
    check(search("TEXT", literal="grüße aus z"), [2], "TEXT an encoded subject")
    check(search("TEXT", '"ustermann"'), [7], "TEXT a display name")
    check(search("TEXT", '"xtra val"'), [1], "TEXT any header field")
    check(search("TEXT", '"x-extra: some"'), [1], "TEXT a field's name and value")
    check(search("TEXT", '"mar 2007 00:00"'), [1], "TEXT a date as written")
    check(search("BODY", '"xtra"'), [], "BODY is not the header")
    check(search("TEXT", '"lain"', "NOT", "BODY", '"ords"'), [], "substrings with NOT")
    check(search("OR", "BODY", '"lai"', "BODY", '"ater"'), [6, 7], "OR of substrings")
    # Terms without words are substrings too.
    check(search("TEXT", '"?"'), [1], "TEXT ?")
    check(search("BODY", '"?"'), [1], "BODY ?")
    check(search("BODY", '"="'), [3], "BODY =")
    check(search("TEXT", '"="'), [3], "TEXT =")
    check(search("NOT", "BODY", '"?"'), [2, 3, 4, 5, 6, 7], "NOT BODY ?")

    # The same through SORT, UID SEARCH and ESEARCH.
    typ, data = m.sort("(DATE)", "UTF-8", "SENTBEFORE", "25-Mar-2007")
    assert typ == "OK" and data[0].split() == [b"6", b"2"], data
    uids = [int(x) for x in os.environ["UIDS"].split()]
    typ, data = m.uid("SEARCH", "SUBJECT", '"?"')
    assert typ == "OK" and [int(x) for x in data[0].split()] == [uids[0]], data
    typ, data = m._simple_command("SEARCH", "RETURN", "(COUNT)", "HEADER", "To", '""')
    assert typ == "OK" and b"COUNT 3" in m.untagged_responses.pop("ESEARCH", [b""])[0], (typ, data)


{"dates": dates, "headers": headers}[os.environ["CHECKS"]]()
m.logout()
print("header SEARCH checks passed")
