"""CONDSTORE (RFC 7162 §3.1) as imaplib sees it: driven by `imaplib_syncs_with_condstore` in
tests/imap.rs. Reader's INBOX: messages "one", "two", "three" (UIDs in $UIDS; someone
else's message sits between one and two). Mail arrives while connected when this script
prints `DELIVER <address>`; the test answers with the new message's UID on stdin.

The archive's messages never change, so MODSEQ is UID + 1 and HIGHESTMODSEQ is UIDNEXT
(archive-imap/src/condstore.rs).
"""

import imaplib
import os
import re
import sys

PORT = int(os.environ["IMAP_PORT"])
UIDS = [int(u) for u in os.environ["UIDS"].split()]
MODSEQ = [u + 1 for u in UIDS]


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def code(m, name):
    """The last value of response code `name` in untagged OKs since the last call."""
    values = m.untagged_responses.pop(name, [])
    return values[-1] if values else None


def seqset(numbers):
    """A compact ascending sequence set."""
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


def modified(data):
    """The set of a tagged OK's [MODIFIED set] code, or None."""
    found = re.match(rb"\[MODIFIED ([^\]]*)\]", data[0])
    return found.group(1).decode() if found else None


def deliver(address):
    print(f"DELIVER {address}", flush=True)
    return int(sys.stdin.readline())


def select(m, *params):
    m.untagged_responses.clear()
    m.is_readonly = True  # imaplib raises on a later EXAMINE's [READ-ONLY] otherwise
    typ, data = m._simple_command("SELECT", "INBOX", *params)
    assert typ == "OK", (typ, data)
    m.state = "SELECTED"
    highest = int(code(m, "HIGHESTMODSEQ"))
    uidnext = int(code(m, "UIDNEXT"))
    return highest, uidnext


def fetch(m, *args, uid=False):
    """FETCH lines as {message number: {item: value}} (values as text)."""
    m.untagged_responses.pop("FETCH", None)
    if uid:
        typ, data = m.uid("FETCH", *args)
    else:
        typ, data = m._simple_command("FETCH", *args)
        typ, data = m._untagged_response(typ, data, "FETCH")
    assert typ == "OK", (args, typ, data)
    out = {}
    for line in data:
        if line is None:
            continue
        line = line.decode() if isinstance(line, bytes) else line[0].decode()
        n, items = line.split(" ", 1)
        found = dict(re.findall(r"(UID|MODSEQ|FLAGS) (\([^()]*\)|[^ ()]+)", items))
        out[int(n)] = {k: v.strip("()") for k, v in found.items()}
    return out


m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
assert b"CONDSTORE" in ok(m.capability())[0].split()

# SELECT reports HIGHESTMODSEQ always; it is UIDNEXT, the last message's MODSEQ.
highest, uidnext = select(m, "(CONDSTORE)")
assert highest == uidnext == MODSEQ[-1], (highest, uidnext, MODSEQ)
got = fetch(m, "1:*", "(UID MODSEQ)")
assert got == {i + 1: {"UID": str(u), "MODSEQ": str(u + 1)} for i, u in enumerate(UIDS)}, got

# CHANGEDSINCE: messages with a higher MODSEQ, with MODSEQ added; nothing at HIGHESTMODSEQ.
assert fetch(m, "1:*", "(FLAGS)", f"(CHANGEDSINCE {highest})") == {}
got = fetch(m, "1:*", "(FLAGS)", f"(CHANGEDSINCE {MODSEQ[0]})")
assert got == {2: {"FLAGS": "\\Seen", "MODSEQ": str(MODSEQ[1])},
               3: {"FLAGS": "\\Seen", "MODSEQ": str(MODSEQ[2])}}, got
got = fetch(m, "1:*", "(FLAGS)", f"(CHANGEDSINCE {MODSEQ[1]})", uid=True)
assert list(got) == [3] and got[3]["UID"] == str(UIDS[2]), got

# SEARCH MODSEQ: MODSEQ at least the value; the answer names the highest it found.
typ, data = m.search(None, "MODSEQ", str(MODSEQ[1]))
assert typ == "OK" and data == [f"2 3 (MODSEQ {MODSEQ[2]})".encode()], data
typ, data = m.search(None, "MODSEQ", '"/flags/\\\\seen"', "all", str(MODSEQ[0]), "1:2")
assert typ == "OK" and data == [f"1 2 (MODSEQ {MODSEQ[1]})".encode()], data
typ, data = m.search(None, "MODSEQ", str(highest + 1))
assert typ == "OK" and data == [b""], data
typ, data = m.search(None, "ALL")
assert data == [b"1 2 3"], data  # no MODSEQ without the MODSEQ key
typ, data = m._simple_command("SEARCH", "RETURN", "(MIN)", "MODSEQ", "1")
assert typ == "OK", data
line = m.untagged_responses.pop("ESEARCH")[0].decode()
assert line.endswith(f"MIN 1 MODSEQ {MODSEQ[0]}"), line
typ, data = m.sort("(REVERSE ARRIVAL)", "UTF-8", "MODSEQ", "1")
assert typ == "OK" and data == [f"3 2 1 (MODSEQ {MODSEQ[2]})".encode()], data

# STORE UNCHANGEDSINCE: fails above the value ([MODIFIED]), "succeeds" (changing nothing)
# at or below it, with UID and MODSEQ in every FETCH once CONDSTORE is enabled.
m.untagged_responses.clear()
typ, data = m._simple_command("STORE", "1:3", f"(UNCHANGEDSINCE {MODSEQ[1]})", "+FLAGS", "(\\Flagged)")
assert typ == "OK" and modified(data) == "3", (typ, data)
fetched = [x.decode() for x in m.untagged_responses.pop("FETCH")]
assert fetched == [f"{i} (UID {UIDS[i - 1]} FLAGS (\\Seen) MODSEQ ({MODSEQ[i - 1]}))" for i in (1, 2)], fetched
# .SILENT: still a FETCH with MODSEQ for the messages that passed (RFC 7162 §3.1.3).
typ, data = m._simple_command("UID", "STORE", f"{UIDS[0]}:{UIDS[2]}", f"(UNCHANGEDSINCE {MODSEQ[0]})", "+FLAGS.SILENT", "(\\Seen)")
assert typ == "OK" and modified(data) == seqset(UIDS[1:]), (typ, data)
fetched = [x.decode() for x in m.untagged_responses.pop("FETCH")]
assert fetched == [f"1 (UID {UIDS[0]} MODSEQ ({MODSEQ[0]}))"], fetched
# UNCHANGEDSINCE 0 fails for every message; nothing is sent for them.
typ, data = m._simple_command("STORE", "1:*", "(UNCHANGEDSINCE 0)", "FLAGS.SILENT", "()")
assert typ == "OK" and modified(data) == "1:3", (typ, data)
assert "FETCH" not in m.untagged_responses
# Nothing changed: same flags, same MODSEQs.
assert fetch(m, "1:*", "(FLAGS MODSEQ)") == {
    i + 1: {"FLAGS": "\\Seen", "MODSEQ": str(q)} for i, q in enumerate(MODSEQ)}

# STATUS HIGHESTMODSEQ is the same value.
typ, data = m.status("INBOX", "(HIGHESTMODSEQ UIDNEXT)")
assert typ == "OK" and f"HIGHESTMODSEQ {highest} UIDNEXT {highest}" in data[0].decode(), data

# Someone else's mail (and the audit records of this session) move nothing...
deliver("other@example.org")
ok(m.noop())
assert "EXISTS" not in m.untagged_responses or m.untagged_responses["EXISTS"][-1] == b"3"
typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
assert f"HIGHESTMODSEQ {highest}" in data[0].decode(), data
# ...new mail for the reader moves HIGHESTMODSEQ to its MODSEQ, and CHANGEDSINCE finds it.
new_uid = deliver("reader@example.org")
ok(m.noop())
typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
assert f"HIGHESTMODSEQ {new_uid + 1}" in data[0].decode(), (data, new_uid)
got = fetch(m, "1:*", "(UID FLAGS)", f"(CHANGEDSINCE {highest})", uid=True)
assert got == {4: {"UID": str(new_uid), "FLAGS": "\\Seen", "MODSEQ": str(new_uid + 1)}}, got
typ, data = m.search(None, "MODSEQ", str(highest + 1))
assert data == [f"4 (MODSEQ {new_uid + 1})".encode()], data

# QRESYNC is not offered: its SELECT parameter and VANISHED are BAD.
for args in [("SELECT", "INBOX", f"(QRESYNC (1 {highest}))"), ("UID", "FETCH", "1:*", "FLAGS", "(CHANGEDSINCE 1 VANISHED)")]:
    try:
        m._simple_command(*args)
        raise AssertionError(f"{args} was accepted")
    except imaplib.IMAP4.error as e:
        assert "BAD" in str(e), e
m.logout()

# A session that did not enable CONDSTORE: SELECT reports HIGHESTMODSEQ anyway; STORE
# answers without MODSEQ until an enabling command (here FETCH MODSEQ), which also reports
# HIGHESTMODSEQ; a SELECT that replaces a selected mailbox says CLOSED first.
m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
highest, _ = select(m)
assert highest == new_uid + 1, highest
m.untagged_responses.clear()
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
assert typ == "OK" and data == [b"1 (FLAGS (\\Seen))"], data
m.untagged_responses.clear()
got = fetch(m, "1", "(MODSEQ)")
assert got == {1: {"MODSEQ": str(MODSEQ[0])}}, got
assert m.untagged_responses.get("HIGHESTMODSEQ") == [str(highest).encode()], m.untagged_responses
m.untagged_responses.clear()
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
assert data == [f"1 (UID {UIDS[0]} FLAGS (\\Seen) MODSEQ ({MODSEQ[0]}))".encode()], data
m.untagged_responses.clear()
m.is_readonly = True
typ, data = m._simple_command("EXAMINE", "Sent")
assert typ == "OK" and "CLOSED" in m.untagged_responses, m.untagged_responses
m.logout()

# ENABLE CONDSTORE (before SELECT, RFC 5161) is answered ENABLED CONDSTORE.
m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
typ, data = m._simple_command("ENABLE", "CONDSTORE", "QRESYNC")
assert typ == "OK" and m.untagged_responses.pop("ENABLED") == [b"CONDSTORE"], m.untagged_responses
select(m)
typ, data = m.store("2", "+FLAGS", "(\\Flagged)")
assert data == [f"2 (UID {UIDS[1]} FLAGS (\\Seen) MODSEQ ({MODSEQ[1]}))".encode()], data
m.logout()
print("CONDSTORE checks passed")
