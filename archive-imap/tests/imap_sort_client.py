"""SORT and THREAD as imaplib sees them: driven by `imaplib_sorts_and_threads` in
tests/imap.rs, which archives five messages for `reader` (UIDs in $UIDS, mailbox order):

  1 Plans          From "Aaron Zed" <zed@>  3 Jan 2024   Message-ID t1        400 bytes pad
  2 Re: Plans      From amy@                1 Jan 2024   References t1        100
  3 [list] apples  From "Bob" <bob@>, Cc    2 Jan 2024   Message-ID t3        300
  4 Re: apples (fwd) From "Carl"            no Date      In-Reply-To t3       200
  5 RE: plans      From "Dan"               4 Jan 2024   no references        500
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])
UIDS = [int(u) for u in os.environ["UIDS"].split()]


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
caps = ok(m.capability())[0].split()
for cap in [b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"]:
    assert cap in caps, caps
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def sort(criteria, *search, uid=False):
    search = search or ("ALL",)
    if uid:
        data = ok(m.uid("SORT", criteria, "UTF-8", *search), criteria)
    else:
        data = ok(m.sort(criteria, "UTF-8", *search), criteria)
    return [int(x) for x in data[0].split()]


assert sort("(ARRIVAL)") == [1, 2, 3, 4, 5]
assert sort("(REVERSE ARRIVAL)") == [5, 4, 3, 2, 1]
# Sent dates; 4 has none and falls back to its receive time (now).
assert sort("(DATE)") == [2, 3, 1, 5, 4]
assert sort("(REVERSE DATE)") == [4, 5, 1, 3, 2]
# Base subjects APPLES (3, 4) and PLANS (1, 2, 5); ties by message number.
assert sort("(SUBJECT)") == [3, 4, 1, 2, 5]
assert sort("(SUBJECT REVERSE DATE)") == [4, 3, 5, 1, 2]
# addr-mailbox: amy, bob, carl, dan, zed.
assert sort("(FROM)") == [2, 3, 4, 5, 1]
# Display names: "aaron zed", "amy@example.org" (no name), "bob", "carl", "dan".
assert sort("(DISPLAYFROM)") == [1, 2, 3, 4, 5]
assert sort("(CC)") == [1, 2, 4, 5, 3]
assert sort("(TO)") == [1, 2, 3, 4, 5]
assert sort("(DISPLAYTO REVERSE SIZE)") == [5, 1, 3, 4, 2]
assert sort("(SIZE)") == [2, 4, 3, 1, 5]
assert sort("(DATE)", "2:4") == [2, 3, 4]
assert sort("(DATE)", uid=True) == [UIDS[i - 1] for i in [2, 3, 1, 5, 4]]
assert sort("(DATE)", "UID", f"{UIDS[2]}:*", uid=True) == [UIDS[2], UIDS[4], UIDS[3]]

typ, data = m._simple_command("SORT", "(DATE)", "KOI8-R", "ALL")
assert typ == "NO" and b"BADCHARSET" in data[-1], (typ, data)


def bad(*args):
    try:
        typ, data = m._simple_command(*args)
    except imaplib.IMAP4.error as e:  # imaplib raises on BAD
        assert "BAD" in str(e), e
        return
    raise AssertionError(f"{args}: {typ} {data}")


bad("SORT", "(NOSUCHKEY)", "UTF-8", "ALL")
ok(m.noop(), "session survives a malformed SORT")


def thread(algorithm, *search, uid=False):
    search = search or ("ALL",)
    if uid:
        data = ok(m.uid("THREAD", algorithm, "UTF-8", *search), algorithm)
    else:
        data = ok(m.thread(algorithm, "UTF-8", *search), algorithm)
    return data[0].decode() if data[0] else ""


# ORDEREDSUBJECT: PLANS (2, then 1 and 5) starts 1 Jan, APPLES (3, then 4) 2 Jan.
assert thread("ORDEREDSUBJECT") == "(2 (1)(5))(3 4)", thread("ORDEREDSUBJECT")
# REFERENCES: 1 is 2's parent, 3 is 4's; 5 (a reply, no references) joins 1 by subject.
# Roots by date: 3 (2 Jan), 1 (3 Jan); 1's children by date: 2 (1 Jan), 5 (4 Jan).
assert thread("REFERENCES") == "(3 4)(1 (2)(5))", thread("REFERENCES")
u = UIDS
assert thread("REFERENCES", uid=True) == f"({u[2]} {u[3]})({u[0]} ({u[1]})({u[4]}))"
assert thread("REFERENCES", "3:5") == "(3 4)(5)", thread("REFERENCES", "3:5")
bad("THREAD", "NOSUCH", "UTF-8", "ALL")
ok(m.noop(), "session survives a bad THREAD")
m.logout()
print("SORT and THREAD checks passed")
