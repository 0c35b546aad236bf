"""ESEARCH (RFC 4731) and ESORT (RFC 5267 §3) as imaplib sees them: driven by
`imaplib_gets_esearch_answers` in
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
caps = ok(m.capability())[0].split()
assert b"ESEARCH" in caps and b"ESORT" in caps, caps
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def esearch(*args, uid=False, command="SEARCH"):
    """Sends [UID] SEARCH (or SORT) with `args`; returns the ESEARCH data and the tag it must
    name."""
    tag = (m.tagpre + str(m.tagnum).encode()).decode()
    for name in ["SEARCH", "SORT", "ESEARCH"]:
        m.untagged_responses.pop(name, None)
    if uid:
        typ, data = m.uid(command, *args)
    else:
        typ, data = m._simple_command(command, *args)
    assert typ == "OK", (args, typ, data)
    for name in ["SEARCH", "SORT"]:
        assert name not in m.untagged_responses, f"{args}: a {name} line was sent too"
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

# ESORT: the same options on SORT; MIN and MAX are the first and last in sort order, ALL
# lists the sort order, with ranges only where it ascends by one (RFC 5267 3.1, 3.2).
# By subject: apples (3), kiwi again (4), kiwi report (1), pears (5), plans (2).
def esort(*args, uid=False):
    return esearch(*args, uid=uid, command="SORT")


check(esort("RETURN", "(MIN MAX COUNT ALL)", "(SUBJECT)", "UTF-8", "ALL"),
      "MIN 3 MAX 2 COUNT 5 ALL 3:4,1,5,2")
check(esort("RETURN", "()", "(REVERSE SUBJECT)", "UTF-8", "ALL"), "ALL 2,5,1,4,3")
order = [UIDS[2], UIDS[3], UIDS[0], UIDS[4], UIDS[1]]
check(esort("RETURN", "(ALL MIN)", "(SUBJECT)", "UTF-8", "ALL", uid=True),
      f"UID MIN {order[0]} ALL {','.join(map(str, order))}")
check(esort("RETURN", "(COUNT MAX)", "(ARRIVAL)", "UTF-8", "TEXT", "kiwi"), "MAX 4 COUNT 3")
check(esort("RETURN", "(MIN COUNT)", "(SUBJECT)", "UTF-8", "SUBJECT", "nosuchword"), "COUNT 0")
# Without RETURN, a SORT line as always; CONTEXT=SORT's options are not offered.
typ, data = m.sort("(SUBJECT)", "UTF-8", "ALL")
assert typ == "OK" and data == [b"3 4 1 5 2"], data
why = bad("SORT", "RETURN", "(PARTIAL 1:2)", "(SUBJECT)", "UTF-8", "ALL")
assert "PARTIAL" in why, why
ok(m.noop(), "session survives a refused ESORT")
m.logout()
print("all ESEARCH and ESORT checks passed")
