"""ENVELOPE address lists as imaplib sees them, and the SEARCH keys that search them: driven
by `imaplib_reads_envelope_addresses` in tests/imap.rs (five messages of odd address fields;
see there). RFC 3501 §7.4.2: a mailbox is (name adl mailbox host); a group is
(NIL NIL "name" NIL), its members, and (NIL NIL NIL NIL). Where the RFC says nothing
(garbage), the answers are Dovecot's.
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])

m = imaplib.IMAP4("127.0.0.1", PORT)
typ, _ = m.login("reader", "reader-pw")
assert typ == "OK"
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def envelope(n):
    typ, data = m.fetch(str(n), "(ENVELOPE)")
    assert typ == "OK" and len(data) == 1, (typ, data)
    line = data[0].decode()
    assert line.startswith(f"{n} (ENVELOPE ("), line
    return line[len(f"{n} (ENVELOPE ("):-2]


A = '((NIL NIL "a" "x"))'
# An empty group is its two markers only (the comment in it is no address); a source
# route goes into the adl field.
assert envelope(1) == (
    f'NIL "e1" {A} {A} {A} ((NIL "@route" "user" "domain")) '
    '((NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL'
), envelope(1)
# Comments are no part of display names; a field of only a comment is NIL.
FROM2 = '(("Quoted, Name" NIL "q" "x")("Plain Name" NIL "p" "x"))'
assert envelope(2) == (
    f'NIL "e2" {FROM2} {FROM2} {FROM2} '
    '((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
    '((NIL NIL "g1" NIL)(NIL NIL "a" "b")("N" NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "e" "f")) '
    'NIL NIL NIL'
), envelope(2)
# Encoded words go out as written; a nested group's inner name is dropped; an open group
# is closed at the end of the field (also when folded); a Reply-To without addresses is
# the From; a route of several domains is one adl.
FROM3 = '(("=?utf-8?q?J=C3=BCrgen?=" NIL "j" "x"))'
assert envelope(3) == (
    f'NIL "e3" {FROM3} ((NIL "@r1,@r2" "u" "d")) {FROM3} '
    '((NIL NIL "outer" NIL)(NIL NIL "a" "b")(NIL NIL NIL NIL)(NIL NIL "c" "d")) '
    '((NIL NIL "unterminated" NIL)(NIL NIL "a" "b")(NIL NIL "c" "d")(NIL NIL NIL NIL)) '
    'NIL NIL NIL'
), envelope(3)
# Garbage: a word without domain, a name without address (Dovecot's placeholders, never a
# NIL mailbox and host, which means a group marker); RFC 822's `addr (Name)`; 8-bit names
# as one UTF-8 encoded word.
G = '((NIL NIL "garbage" "MISSING_DOMAIN"))'
assert envelope(4) == (
    f'NIL "e4" {G} {G} {G} '
    '(("just a name" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) '
    '(("Comment Name" NIL "a" "b")) '
    '(("=?utf-8?b?SGFucyBNw7xsbGVy?=" NIL "h" "x")) NIL NIL'
), envelope(4)



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


# RFC 3501 §6.4.4: FROM, TO, CC and BCC search "the envelope structure's" field: the
# addresses as above, written `name <mailbox@host>`, `mailbox@host` or `group: …;`, names
# decoded. So comments and white space inside an address do not hide it (imaptest's
# search-addresses)...
check(search("FROM", "user-from@example.org"), [5], "FROM across comments")
check(search("FROM", "ser-from@exam"), [5], "FROM part of it")
check(search("FROM", "comment"), [], "FROM comment inside an address")
check(search("TO", "user@domain"), [1], "TO with a source route")
check(search("CC", "a@b"), [2, 3, 4], "CC in and out of groups")
check(search("CC", '"comment name <a@b>"'), [4], "CC addr (Name) is a name")
check(search("FROM", '"quoted, name <q@x>"'), [2], "FROM quoted name, unquoted")
check(search("FROM", literal="JÜRGEN <J@X>"), [3], "FROM decoded name")
check(search("TO", "outer"), [3], "TO group name")
check(search("TO", '"undisclosed-recipients:"'), [2], "TO empty group")
check(search("FROM", "garbage"), [4], "FROM word without domain")
check(search("TO", "missing_"), [], "placeholders are not searched")
check(search("BCC", '""'), [2, 4], "BCC empty: the field exists (2: a comment only)")
# ...while HEADER searches the field as written (decoded, unfolded), comments included.
check(search("HEADER", "From", '"(comment)@"'), [5], "HEADER From comment")
check(search("HEADER", "From", "user-from@example.org"), [], "HEADER From as written")

m.logout()
print("ENVELOPE and address SEARCH checks passed")
