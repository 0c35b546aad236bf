"""ESEARCH (RFC 4731) as imaplib sees it: driven by `imaplib_gets_esearch_answers` in
tests/imap.rs, which archives five messages for `reader` (UIDs in $UIDS, mailbox order; a
message for someone else sits between 2 and 3, so the UIDs are not contiguous):

  1 Subject "kiwi report"    2 "plans" (body mentions kiwi)    3 "apples"
  4 "kiwi again"             5 "pears"
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])
UIDS = [int(u) for u in os.environ["UIDS"].split()]


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def seqset(numbers):
    """The compact sequence set the server is expected to send (ascending runs)."""
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
assert b"ESEARCH" in ok(m.capability())[0].split()
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def esearch(*args, uid=False):
    """Sends [UID] SEARCH with `args`; returns the ESEARCH data and the tag it must name."""
    tag = (m.tagpre + str(m.tagnum).encode()).decode()
    for name in ["SEARCH", "ESEARCH"]:
        m.untagged_responses.pop(name, None)
    if uid:
        typ, data = m.uid("SEARCH", *args)
    else:
        typ, data = m._simple_command("SEARCH", *args)
    assert typ == "OK", (args, typ, data)
    assert "SEARCH" not in m.untagged_responses, f"{args}: a SEARCH line was sent too"
    _, lines = m.response("ESEARCH")
    assert len(lines) == 1 and lines[0] is not None, (args, lines)
    line = lines[0].decode()
    prefix = f'(TAG "{tag}")'
    assert line.startswith(prefix), (line, prefix)
    return line[len(prefix):].strip()


def check(got, want):
    assert got == want, f"got {got!r}, want {want!r} (UIDs {UIDS})"


def bad(*args):
    try:
        typ, data = m._simple_command(*args)
    except imaplib.IMAP4.error as e:  # imaplib raises on BAD
        assert "BAD" in str(e), e
        return str(e)
    raise AssertionError(f"{args}: {typ} {data}")


every = seqset(UIDS)
assert "," in every, every  # the UIDs have a gap
check(esearch("RETURN", "(MIN MAX COUNT ALL)", "ALL", uid=True),
      f"UID MIN {UIDS[0]} MAX {UIDS[-1]} COUNT 5 ALL {every}")
# RETURN () is ALL; message numbers without UID.
check(esearch("RETURN", "()", "2:4"), "ALL 2:4")
check(esearch("RETURN", "(COUNT MIN)", "NOT", "3"), "MIN 1 COUNT 4")
# No match: MIN/MAX/ALL left out, COUNT always there when asked for (RFC 4731 3.1).
check(esearch("RETURN", "(COUNT)", "SUBJECT", "nosuchword"), "COUNT 0")
check(esearch("RETURN", "(MIN MAX ALL)", "SUBJECT", "nosuchword", uid=True), "UID")
# Content keys are answered by the full-text index; option names in any case.
check(esearch("return", "(all count)", "TEXT", "kiwi", uid=True),
      f"UID COUNT 3 ALL {seqset([UIDS[0], UIDS[1], UIDS[3]])}")
check(esearch("RETURN", "(MAX)", "CHARSET", "UTF-8", "SUBJECT", "kiwi"), "MAX 4")
# A literal in the criteria (imaplib sends it synchronizing, after the continuation).
m.literal = b"kiwi"
check(esearch("RETURN", "(COUNT)", "SUBJECT"), "COUNT 2")

# Unknown options are BAD, and the session goes on.
why = bad("SEARCH", "RETURN", "(MIN PARTIAL)", "ALL")
assert "PARTIAL" in why, why
bad("UID", "SEARCH", "RETURN", "(SAVE)", "ALL")
bad("SEARCH", "RETURN", "(MIN)")
ok(m.noop(), "session survives a refused ESEARCH")
# Without RETURN, SEARCH answers as it always did.
assert ok(m.search(None, "SUBJECT", "kiwi")) == [b"1 4"]
assert "ESEARCH" not in m.untagged_responses
m.logout()
print("all ESEARCH checks passed")
