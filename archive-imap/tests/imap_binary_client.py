"""BINARY as imaplib sees it: driven by `imaplib_fetches_binary_as_rfc_3516_says` in
tests/imap.rs. Message 1 is one quoted-printable part; message 2 has base64 with junk,
concatenated padded base64, corrupt quoted-printable, an unknown encoding and
quoted-printable with 8-bit bytes and bare line feeds. Expected values are Dovecot's
(2.3.19) answers to the same messages, except where RFC 2045 decides otherwise (noted).
"""

import imaplib
import os

PORT = int(os.environ["IMAP_PORT"])
imaplib.Commands.setdefault("UNSELECT", ("SELECTED",))


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


m = imaplib.IMAP4("127.0.0.1", PORT)
ok(m.login("reader", "reader-pw"))
try:
    m.select("INBOX")
except imaplib.IMAP4.readonly:
    m.is_readonly = True


def fetch(n, items):
    """The untagged answer of FETCH n as a list of (head, literal) and plain lines."""
    return ok(m.fetch(str(n), items), items)


def literal(n, item):
    """(the line up to the literal, the literal's bytes) of one item."""
    data = fetch(n, f"({item})")
    parts = [d for d in data if isinstance(d, tuple)]
    assert len(parts) == 1, (item, data)
    return parts[0]


def size(n, section):
    data = fetch(n, f"(BINARY.SIZE[{section}])")
    line = data[0].decode()
    return int(line.rsplit(" ", 1)[1].rstrip(")"))


# Quoted-printable: trailing blanks are transport padding (RFC 2045 §6.7 rule 3), and "="
# then blanks then the line break is a soft line break (rule 5). Dovecot: 60 bytes.
QP = b"line with trailing blanks\r\nsoft break nextjoined\r\ntab\r\nend\r\n"
head, body = literal(1, "BINARY.PEEK[1]")
assert body == QP, body
assert head.endswith(b"BINARY[1] ~{60}"), head
assert size(1, "1") == len(QP) == 60

# Partial fetches name their origin (RFC 3516 §4.2, as BODY[]<> in RFC 3501).
head, body = literal(1, "BINARY.PEEK[1]<5.7>")
assert head.endswith(b"BINARY[1]<5> ~{7}") and body == b"with tr", (head, body)
head, body = literal(1, "BINARY.PEEK[1]<0.1000>")
assert head.endswith(b"BINARY[1]<0> ~{60}") and body == QP, (head, body)
head, body = literal(1, "BINARY.PEEK[1]<100000.5>")
assert head.endswith(b"BINARY[1]<100000> ~{0}") and body == b"", (head, body)
head, body = literal(1, "BINARY.PEEK[]<0.4>")
assert head.endswith(b"BINARY[]<0> ~{4}") and body == b"From", (head, body)
# With other items around it, in the order asked.
data = fetch(1, "(UID BINARY.PEEK[1]<1.3> BINARY.SIZE[1] BODY.PEEK[1]<0.4>)")
assert data[0][0].split(b" (", 1)[1].startswith(b"UID ") and data[0][0].endswith(b"BINARY[1]<1> ~{3}"), data
assert data[0][1] == b"ine", data
assert data[1].startswith(b" BINARY.SIZE[1] 60 BODY[1]<0> {4}") or b"BINARY.SIZE[1] 60 BODY[1]<0>" in data[1], data

# base64: characters outside the alphabet are ignored (RFC 2045 §6.8; Dovecot refuses such
# parts with [PARSE]), and padding ends a group, so concatenated encodings decode whole.
head, body = literal(2, "BINARY.PEEK[1]")
assert body == b"hello world", body
assert size(2, "1") == 11
head, body = literal(2, "BINARY.PEEK[2]")
assert body == b"aaab", body
assert size(2, "2") == 4
head, body = literal(2, "BINARY.PEEK[2]<3.10>")
assert head.endswith(b"BINARY[2]<3> ~{1}") and body == b"b", (head, body)

# 8-bit bytes stay, lower-case escapes decode, a bare line feed is a line break written as
# the part's others are (Dovecot: the same 22 bytes). The last line break is the boundary's.
EIGHT = b"8bit \xc3\xa4 \xc3\xa4\xe4\r\nbare\r\nlfsoft"
head, body = literal(2, "BINARY.PEEK[5]")
assert body == EIGHT, body
assert size(2, "5") == len(EIGHT)


def refused(items, code):
    typ, data = m.fetch("2", items)
    assert typ == "NO" and f"[{code}]".encode() in data[-1], (items, typ, data)


# Corrupt quoted-printable: [PARSE], as Dovecot; an unknown encoding: [UNKNOWN-CTE].
refused("(BINARY.PEEK[3])", "PARSE")
refused("(BINARY.SIZE[3])", "PARSE")
refused("(BINARY.PEEK[4])", "UNKNOWN-CTE")
refused("(BINARY.SIZE[4])", "UNKNOWN-CTE")
# The session goes on, and BODY gives the stored bytes of the same parts.
assert fetch(2, "(BODY.PEEK[3])") == [b'2 (BODY[3] "not hex =ZZ")']
m.logout()
print("BINARY checks passed")
