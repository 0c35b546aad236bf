"""SORT by address fields that start with a group: driven by
`imaplib_sorts_by_groups_as_dovecot` in tests/imap.rs. The expected orders are Dovecot
2.3.19's answers for the same six messages: the group's name sorts (the start marker is the
first ENVELOPE address, RFC 5256 §2.2), not its first member.

  1 To zeta: aaa@b;        Cc zgroup: aaa@b, c@d;
  2 To "Mid Name" <mmm@b>  Cc mmm@b
  3 To agroup:;            Cc agroup:;
  4 To empty:;, zzz@b      Cc empty:;, zzz@b
  5 To "Bee" <yyy@b>       Cc yyy@b
  6 no To, no Cc
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])

m = imaplib.IMAP4("127.0.0.1", PORT)
assert m.login("reader", "reader-pw")[0] == "OK"
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def sort(criteria):
    typ, data = m.sort(criteria, "UTF-8", "ALL")
    assert typ == "OK", (criteria, typ, data)
    return [int(x) for x in data[0].split()]


assert sort("(CC)") == [6, 3, 4, 2, 5, 1], sort("(CC)")
assert sort("(TO)") == [6, 3, 4, 2, 5, 1], sort("(TO)")
assert sort("(DISPLAYTO)") == [6, 3, 5, 4, 2, 1], sort("(DISPLAYTO)")
assert sort("(REVERSE CC)") == [1, 5, 2, 4, 3, 6], sort("(REVERSE CC)")
m.logout()
print("SORT group checks passed")
