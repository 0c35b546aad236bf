"""SEARCH bounds as imaplib sees them (issue #10): driven by `imaplib_searches_deep_and_wide`
in tests/imap.rs, which archives, for `reader` (UIDs in $UIDS, mailbox order), one message
from each of a0@example.org … a11@example.org, then one from zed@example.org (the last UID).
Every message mentions kiwi in its body.

- 100 ORs of FROM (nested to the right, deeper than imap-codec parses) find the a-senders;
  SORT and THREAD take them too; beyond the nesting cap the answer is a BAD with a reason.
- 5,000 identical TEXT keys are one key; 5,000 distinct ones are NO [LIMIT]. Meanwhile
  another session is answered, and this one goes on afterwards.
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])
UIDS = [int(u) for u in os.environ["UIDS"].split()]
SENDERS = len(UIDS) - 1  # a0 … a11; the last message is from zed


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def login():
    m = imaplib.IMAP4("127.0.0.1", PORT)
    ok(m.login("reader", "reader-pw"))
    try:
        m.select("INBOX")
    except imaplib.IMAP4.readonly:
        m.is_readonly = True
    return m


def ors(n):
    """`OR FROM a0 OR FROM a1 … OR FROM a(n-1) FROM an`: n ORs, nested to the right."""
    keys = []
    for i in range(n):
        keys += ["OR", "FROM", f"a{i}@example.org"]
    return keys + ["FROM", f"a{n}@example.org"]


def numbers(data):
    return [int(n) for n in data[0].split()]


m = login()
senders = list(range(1, SENDERS + 1))

# 100 ORs: every a-sender, not zed.
check = numbers(ok(m.search(None, *ors(100)), "100 ORs"))
assert check == senders, check
check = numbers(ok(m.uid("SEARCH", *ors(100)), "UID SEARCH 100 ORs"))
assert check == UIDS[:-1], check
# With other keys around them, and negated.
check = numbers(ok(m.search(None, "NOT", "(", *ors(100), ")"), "NOT 100 ORs"))
assert check == [SENDERS + 1], check
check = numbers(ok(m.search(None, "2:4", *ors(100), "TEXT", "kiwi"), "100 ORs and more"))
assert check == [2, 3, 4], check
# With ESEARCH result options too.
m.untagged_responses.pop("ESEARCH", None)
ok(m._simple_command("SEARCH", "RETURN", "(COUNT MAX)", *ors(100)), "ESEARCH 100 ORs")
_, lines = m.response("ESEARCH")
assert lines[0].decode().endswith(f"MAX {SENDERS} COUNT {SENDERS}"), lines
# SORT and THREAD take the same keys.
check = numbers(ok(m.sort("(REVERSE ARRIVAL)", "UTF-8", *ors(100)), "SORT 100 ORs"))
assert check == senders[::-1], check
ok(m.thread("REFERENCES", "UTF-8", *ors(100)), "THREAD 100 ORs")

# Beyond the cap: BAD, with a reason, and the session goes on.
try:
    typ, data = m.search(None, *ors(200))
    raise AssertionError(f"200 ORs: {typ} {data}")
except imaplib.IMAP4.error as e:
    assert "nested deeper than" in str(e), e
ok(m.noop(), "after 200 ORs")

# 5,000 identical TEXT keys: one key.
check = numbers(ok(m.search(None, *(["TEXT", "kiwi"] * 5000)), "5,000 identical keys"))
assert check == senders + [SENDERS + 1], check

# 5,000 distinct TEXT keys: NO [LIMIT]; another session is answered meanwhile.
tag = m._command("SEARCH", *[f"TEXT w{i}" for i in range(5000)])
other = login()
check = numbers(ok(other.search(None, "FROM", "zed@example.org"), "other session"))
assert check == [SENDERS + 1], check
other.logout()
typ, data = m._command_complete("SEARCH", tag)
why = data[0].decode()
assert typ == "NO" and why.startswith("[LIMIT]") and "too complex" in why, (typ, data)
ok(m.noop(), "after 5,000 keys")
check = numbers(ok(m.search(None, "FROM", "a3@example.org"), "after 5,000 keys"))
assert check == [4], check
m.logout()
print("all SEARCH limit checks passed")
