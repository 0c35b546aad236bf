"""What a real IMAP client sees: driven by tests/imap.rs against a live server.

Every check is an assert; the first failure ends the script with a non-zero status and
the traceback names it.
"""

import base64
import imaplib
import os
import re
import socket
import ssl
import time

PORT = int(os.environ["IMAP_PORT"])
IMAPS_PORT = int(os.environ["IMAPS_PORT"])
FIXTURES = os.environ["FIXTURES"]
UIDS = dict(kv.split("=") for kv in os.environ["UIDS"].split())
UIDS = {k: int(v) for k, v in UIDS.items()}
# Commands imaplib does not know by name.
for name in ["ID", "ENABLE", "UNSELECT", "MOVE"]:
    imaplib.Commands.setdefault(name, ("NONAUTH", "AUTH", "SELECTED"))


def step(name):
    print(f"== {name}", flush=True)


def ok(typ_data, what=""):
    typ, data = typ_data
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def connect(user=None, password=None):
    m = imaplib.IMAP4("127.0.0.1", PORT)
    if user:
        ok(m.login(user, password), "login")
    return m


def fixture(rel):
    with open(os.path.join(FIXTURES, rel), "rb") as f:
        return f.read()


def select(m, name):
    """SELECT, which this server answers [READ-WRITE] with PERMANENTFLAGS () (issue #14)."""
    try:
        return m.select(name)
    except imaplib.IMAP4.readonly:
        raise AssertionError(f"SELECT {name} was answered [READ-ONLY]")


def fetch_one(m, uid, item):
    """The bytes of one literal item of one message (UID FETCH)."""
    typ, data = m.uid("FETCH", str(uid), f"({item})")
    assert typ == "OK", (typ, data)
    parts = [d for d in data if isinstance(d, tuple)]
    if not parts:
        # Short 7-bit values come as quoted strings rather than literals.
        lines = [d for d in data if isinstance(d, bytes)]
        assert len(lines) == 1, f"UID {uid} {item}: {data!r}"
        q = re.search(rb'"((?:[^"\\]|\\.)*)"\)$', lines[0])
        assert q, f"UID {uid} {item}: {data!r}"
        return re.sub(rb"\\(.)", rb"\1", q.group(1))
    assert len(parts) == 1, f"UID {uid} {item}: {data!r}"
    return parts[0][1]


def fetch_line(m, uid, item):
    """The whole untagged FETCH line of one message, for items without literals."""
    typ, data = m.uid("FETCH", str(uid), f"({item})")
    assert typ == "OK", (typ, data)
    lines = [d for d in data if isinstance(d, bytes)]
    assert len(lines) == 1, f"UID {uid} {item}: {data!r}"
    return lines[0].decode()


class Raw:
    """A bare socket for what imaplib will not send."""

    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        self.buf = b""
        self.line()  # greeting

    def send(self, data):
        self.s.sendall(data)

    def line(self, timeout=5):
        self.s.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def until_tagged(self, tag):
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines


# ---------------------------------------------------------------------------------------
step("capabilities and login")
m = imaplib.IMAP4("127.0.0.1", PORT)
caps = m.capabilities
assert "IMAP4REV1" in caps and "AUTH=PLAIN" in caps and "STARTTLS" in caps, caps
assert "LOGINDISABLED" not in caps, "loopback may log in without TLS"
try:
    m.login("mallory", "guess")
    raise AssertionError("a wrong password was accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
ok(m.login("erika", "erika-pw"))
assert "NAMESPACE" in m.capabilities or True
typ, data = m.capability()
assert b"SPECIAL-USE" in data[0] and b"BINARY" in data[0], data

step("LIST, LSUB, NAMESPACE, STATUS")
listing = ok(m.list('""', "*"))
assert any(b'"INBOX"' in l or b" INBOX" in l for l in listing), listing
assert any(b"\\Sent" in l and l.endswith(b"Sent") for l in listing), listing
assert len(listing) == 2, listing
assert ok(m.lsub('""', "*")) and len(ok(m.lsub('""', "*"))) == 2
delim = ok(m.list('""', '""'))
assert b'"/"' in delim[0], delim
ns = ok(m.namespace())
assert b'(("" "/"))' in ns[0], ns
st = ok(m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)"))
assert b"MESSAGES 3" in st[0] and b"UNSEEN 0" in st[0], st
typ, data = m.status("Archive", "(MESSAGES)")
assert typ == "NO" and b"NONEXISTENT" in data[0], (typ, data)

step("SELECT keeps no flags, EXAMINE is read-only")
typ, data = select(m, "INBOX")
assert typ == "OK" and data == [b"3"], (typ, data)
assert "READ-WRITE" in m.untagged_responses and "READ-ONLY" not in m.untagged_responses, \
    m.untagged_responses
uidvalidity = int(m.response("UIDVALIDITY")[1][0])
assert uidvalidity > 0
assert m.response("PERMANENTFLAGS")[1] == [b"()"], m.response("PERMANENTFLAGS")
typ, data = m.select("INBOX", readonly=True)  # EXAMINE
assert typ == "OK" and int(m.response("UIDVALIDITY")[1][0]) == uidvalidity
assert "READ-ONLY" in m.untagged_responses, m.untagged_responses
typ, data = select(m, "INBOX")

step("UIDs are archive seqs, sparse")
uids = ok(m.uid("SEARCH", None, "ALL"))[0].split()
assert [int(u) for u in uids] == [UIDS["rechnung"], UIDS["gruesse"], UIDS["blind"]], uids

step("FETCH of every item")
items = (
    "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER] "
    "BODY[TEXT] BODY[1] BODY[1.MIME] BODY[HEADER.FIELDS (Subject Date)] "
    "BODY[HEADER.FIELDS.NOT (Subject)] BODY[]<0.10> BINARY.PEEK[1] BINARY.SIZE[1] "
    "RFC822 RFC822.HEADER RFC822.TEXT"
)
typ, data = m.fetch("1:*", f"({items})")
assert typ == "OK", (typ, data)
text = b"".join(d[0] + d[1] if isinstance(d, tuple) else d for d in data)
for name in [b"FLAGS (\\Seen)", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODYSTRUCTURE",
             b"BODY[HEADER]", b"BODY[TEXT]", b"BODY[1]", b"BODY[1.MIME]", b"BODY[]<0>",
             b"BINARY[1]", b"BINARY.SIZE[1]", b"RFC822 ", b"RFC822.HEADER", b"RFC822.TEXT"]:
    assert name in text, f"{name!r} missing from FETCH"
gruesse = fixture("search/de-gruesse.eml")
header_end = gruesse.index(b"\r\n\r\n") + 4
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[HEADER]") == gruesse[:header_end]
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[TEXT]") == gruesse[header_end:]
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[1]") == gruesse[header_end:]
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[]<5.20>") == gruesse[5:25]
assert fetch_one(m, UIDS["gruesse"], "RFC822") == gruesse
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[HEADER.FIELDS (SUBJECT)]") == \
    b"Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_Z=FCrich?=\r\n\r\n"
assert b"Subject:" not in fetch_one(m, UIDS["gruesse"], "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]")
# BINARY undoes quoted-printable: =FC is one byte 0xFC.
binary = fetch_one(m, UIDS["gruesse"], "BINARY.PEEK[1]")
assert b"\xfcbernimmt" in binary, binary
report = fixture("search/en-report.eml")
assert fetch_one(m, UIDS["blind"], "BODY.PEEK[]") == report
part2 = fetch_one(m, UIDS["blind"], "BODY.PEEK[2]")
assert part2 == b"UEsDBBQAAAAIAA==\r\n", part2
assert fetch_one(m, UIDS["blind"], "BINARY.PEEK[2]") == base64.b64decode(b"UEsDBBQAAAAIAA==")
assert fetch_one(m, UIDS["blind"], "BODY.PEEK[2.MIME]").startswith(b"Content-Type: application/vnd")
size_line = fetch_line(m, UIDS["gruesse"], "RFC822.SIZE")
assert f"RFC822.SIZE {len(gruesse)}" in size_line, size_line

flags = ok(m.uid("FETCH", "1:*", "(FLAGS)"))
assert [f.decode() for f in flags] == [
    f"{n} (UID {UIDS[k]} FLAGS (\\Seen))" for n, k in [(1, "rechnung"), (2, "gruesse"), (3, "blind")]
], flags

step("ENVELOPE and BODYSTRUCTURE as RFC 3501 says (written by hand)")
env = fetch_line(m, UIDS["gruesse"], "ENVELOPE")
assert env.endswith(
    'ENVELOPE ("Mon, 01 Apr 2024 01:30:00 +0200" "=?iso-8859-1?q?Gr=FC=DFe_aus_Z=FCrich?=" '
    '(("Peter Mueller" NIL "p.mueller" "example.ch")) (("Peter Mueller" NIL "p.mueller" "example.ch")) '
    '(("Peter Mueller" NIL "p.mueller" "example.ch")) (("Erika Mustermann" NIL "erika" "example.com")) '
    'NIL NIL NIL "<gruesse-1@example.ch>"))'
), env
# Asked again, the ENVELOPE comes from the shared cache, and exactly the same.
assert fetch_line(m, UIDS["gruesse"], "ENVELOPE") == env
m2 = connect("erika", "erika-pw")
ok(m2.select("INBOX", readonly=True))
assert fetch_line(m2, UIDS["gruesse"], "ENVELOPE") == env, "another session's cache hit"
m2.logout()
bs = fetch_line(m, UIDS["gruesse"], "BODYSTRUCTURE").lower()
assert bs.endswith('bodystructure ("text" "plain" ("charset" "iso-8859-1") nil nil "quoted-printable" 122 6))'), bs
env = fetch_line(m, UIDS["blind"], "ENVELOPE")
assert env.endswith(
    'ENVELOPE ("Mon, 01 Apr 2024 00:00:00 +0000" "Quarterly report" '
    '(("Alice Smith" NIL "alice" "example.com")) (("Alice Smith" NIL "alice" "example.com")) '
    '(("Reports Desk" NIL "reports" "example.com")) (("Bob Jones" NIL "bob" "example.org")) '
    '(("Carol White" NIL "carol" "example.net")) NIL "<thread-start@example.org>" "<report-q1@example.com>"))'
), env
bs = fetch_line(m, UIDS["blind"], "BODYSTRUCTURE").lower()
expected = ('bodystructure (("text" "html" ("charset" "us-ascii") nil nil "7bit" 174 3)'
            '("application" "vnd.openxmlformats-officedocument.spreadsheetml.sheet" '
            '("name" "q1-figures.xlsx") nil nil "base64" 18) "mixed"))')
assert bs.endswith(expected), bs
assert fetch_line(m, UIDS["blind"], "BODY").lower().endswith(expected.replace("bodystructure", "body")), "BODY"

step("SEARCH: view keys and index keys")
def search(*criteria, uid=True):
    if uid:
        return [int(x) for x in ok(m.uid("SEARCH", None, *criteria))[0].split()]
    return [int(x) for x in ok(m.search(None, *criteria))[0].split()]
assert search("FROM", "p.mueller@example.ch") == [UIDS["gruesse"]]
assert search("SUBJECT", "Rechnungen") == [UIDS["rechnung"]]
assert search("TEXT", "quarterly") == [UIDS["blind"]]
assert search("BODY", "Zuerich") == [UIDS["gruesse"]]
assert search("SEEN") == search("ALL")
assert search("UNSEEN") == [] and search("DELETED") == []
assert search("LARGER", str(len(gruesse) - 1), "SMALLER", str(len(gruesse) + 1)) == [UIDS["gruesse"]]
assert search("SINCE", "1-Jan-2000") == search("ALL")
assert search("BEFORE", "1-Jan-2000") == []
# Sent dates are the day written in the Date header (RFC 3501): Grüße, sent "Mon, 01 Apr
# 2024 01:30:00 +0200", is on 1 April although it is 31 March in UTC.
assert search("SENTBEFORE", "1-Apr-2024") == [UIDS["rechnung"]]
assert search("SENTON", "1-Apr-2024") == [UIDS["gruesse"], UIDS["blind"]]
assert search("SENTSINCE", "1-Apr-2024") == [UIDS["gruesse"], UIDS["blind"]]
assert search("OR", "FROM", "hans.mueller@example.de", "FROM", "p.mueller@example.ch") == [UIDS["rechnung"], UIDS["gruesse"]]
assert search("NOT", "FROM", "hans.mueller@example.de") == [UIDS["gruesse"], UIDS["blind"]]
assert search("2:*", uid=False) == [2, 3]
assert search("UID", f"{UIDS['gruesse']}:*") == [UIDS["gruesse"], UIDS["blind"]]
assert search("HEADER", "Message-ID", "gruesse-1@example.ch") == [UIDS["gruesse"]]
# Sparse UIDs: `n:*` with n above every UID still names the last message (RFC 3501), a
# reversed range is a range, and UIDs between the view's are simply absent.
assert search("UID", "4294967295:*") == [UIDS["blind"]]
assert search("UID", f"{UIDS['blind']}:{UIDS['rechnung']}") == [UIDS["rechnung"], UIDS["gruesse"], UIDS["blind"]]
assert search("UID", str(UIDS["report"])) == []
assert search("3:1", uid=False) == [1, 2, 3]
typ, data = m.uid("FETCH", "4294967295:*", "(UID)")
assert typ == "OK" and f"UID {UIDS['blind']}".encode() in data[0], data
# Isolation: Alice's note is not Erika's, whatever she searches for.
assert search("FROM", "owl@example.org") == [] and search("TEXT", "Undated") == []

step("flag changes are answered OK and change nothing (Dovecot's read-only ACL answer)")
typ, data = m.store("1", "+FLAGS", "(\\Deleted \\Flagged)")
assert (typ, data) == ("OK", [b"1 (FLAGS (\\Seen))"]), (typ, data)
typ, data = m.uid("STORE", f"{UIDS['gruesse']}:{UIDS['blind']}", "FLAGS", "()")
assert typ == "OK", (typ, data)
assert data == [f"{n} (UID {u} FLAGS (\\Seen))".encode() for n, u in
                [(2, UIDS["gruesse"]), (3, UIDS["blind"])]], data
typ, data = m.store("1:*", "-FLAGS.SILENT", "(\\Seen)")
assert (typ, data) == ("OK", [None]), (typ, data)
typ, data = m.uid("STORE", str(UIDS["report"]), "+FLAGS", "(\\Deleted)")
assert (typ, data) == ("OK", [None]), "a UID outside the view is answered as none"
assert ok(m.fetch("1:*", "(FLAGS)")) == [f"{n} (FLAGS (\\Seen))".encode() for n in (1, 2, 3)]

step("EXPUNGE is answered OK: no message is \\Deleted, so nothing goes")
m.untagged_responses.pop("EXPUNGE", None)
typ, data = m.expunge()
assert typ == "OK" and data == [None], (typ, data)

step("mutations are refused and change nothing")
for cmd, args in [
    ("COPY", ("1", "Sent")),
    ("CREATE", ("New",)),
    ("DELETE", ("INBOX",)),
    ("RENAME", ("Sent", "Other")),
    ("SUBSCRIBE", ("Other",)),
    ("UNSUBSCRIBE", ("INBOX",)),
]:
    typ, data = getattr(m, cmd.lower())(*args)
    assert typ == "NO", (cmd, typ, data)
    assert b"CANNOT" in data[0], (cmd, data)  # not [READ-ONLY]: imaplib would refuse on
typ, data = m.append("INBOX", None, None, b"Subject: injected\r\n\r\nx\r\n")
assert typ == "NO" and b"CANNOT" in data[0], (typ, data)
typ, data = m.uid("EXPUNGE", "1:*")
assert typ == "NO", (typ, data)
typ, data = m._simple_command("MOVE", "1", "Sent")
assert typ == "NO", (typ, data)
typ, data = select(m, "INBOX")
assert data == [b"3"], data
assert fetch_one(m, UIDS["gruesse"], "BODY.PEEK[]") == gruesse
assert search("DELETED") == []

step("a FETCH 1:* of bodies is audited once (checked by the Rust side)")
typ, data = m.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK" and len([d for d in data if isinstance(d, tuple)]) == 3

step("IDLE sees new mail within a second")
tag = m._new_tag().decode()
m.send(f"{tag} IDLE\r\n".encode())
cont = m.readline()
assert cont.startswith(b"+"), cont
open(os.environ["SIGNAL"], "w").close()
while not os.path.exists(os.environ["APPENDED"]):
    time.sleep(0.01)
time.sleep(0.02)
start = time.monotonic()
m.sock.settimeout(3)
line = m.readline()
took = time.monotonic() - start
assert re.match(rb"\* 4 EXISTS", line), line
assert took < 1.0, took
m.send(b"DONE\r\n")
line = m.readline()
assert line.startswith(f"{tag} OK".encode()), line
m.sock.settimeout(None)
new_uid = int(open(os.environ["APPENDED"]).read())
assert search("ALL")[-1] == new_uid
ok(m.noop())

step("CHECK, ID, ENABLE, UNSELECT, CLOSE, BADCHARSET")
ok(m.check())
typ, data = m._simple_command("ID", "NIL")
assert typ == "OK" and b'"name" "mailvault"' in m.untagged_responses.get("ID", [b""])[0], (typ, m.untagged_responses)
typ, data = m.search("ISO-8859-1", "ALL")
assert typ == "NO" and b"BADCHARSET" in data[0], (typ, data)
assert ok(m.search("UTF-8", "FROM", "p.mueller@example.ch")) == [b"2 4"]  # 4: the IDLE mail
typ, data = m._simple_command("UNSELECT")
assert typ == "OK", (typ, data)
m.state = "AUTH"
typ, data = m._simple_command("ENABLE", "CONDSTORE")
assert typ == "OK" and m.untagged_responses.get("ENABLED") is not None, (typ, data)
m.state = "SELECTED"  # so imaplib lets the FETCH below through
try:
    m._simple_command("FETCH", "1", "(UID)")
    raise AssertionError("FETCH after UNSELECT was accepted")
except imaplib.IMAP4.error as e:
    assert "no mailbox selected" in str(e), e
select(m, "INBOX")
ok(m.close())
assert m._simple_command("NOOP")[0] == "OK"
typ, data = select(m, "INBOX")
assert data == [b"4"], "CLOSE expunged nothing"

step("LOGOUT")
m.logout()

# ---------------------------------------------------------------------------------------
step("isolation: Alice cannot reach Erika's mail")
a = connect("alice", "alice-pw")
typ, data = select(a, "INBOX")
assert data == [b"1"], data
typ, data = a.uid("FETCH", f"{UIDS['gruesse']}", "(BODY.PEEK[])")
assert typ == "OK" and data == [None], (typ, data)
typ, data = a.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert len([d for d in data if isinstance(d, tuple)]) == 1
assert [int(x) for x in ok(a.uid("SEARCH", None, "ALL"))[0].split()] == [UIDS["note"]]
assert ok(a.uid("SEARCH", None, "FROM", "p.mueller@example.ch")) == [b""]
assert ok(a.uid("SEARCH", None, "UID", f"{UIDS['rechnung']}:{UIDS['blind']}")) == [b""]
for name in ["Archive", "Domains/example.com", "Erika", "INBOX/../erika"]:
    typ, data = select(a, name)
    assert typ == "NO" and b"NONEXISTENT" in data[0], (name, typ, data)
    typ, data = a.status(name, "(MESSAGES UIDNEXT)")
    assert typ == "NO" and b"NONEXISTENT" in data[0], (name, typ, data)
# Erika's INBOX is open in another session (her list is shared between her sessions):
# Alice's INBOX still holds only her own message.
e2 = connect("erika", "erika-pw")
assert select(e2, "INBOX")[1] != [b"1"]
typ, data = select(a, "INBOX")
assert data == [b"1"], data
assert ok(a.status("INBOX", "(MESSAGES)"))[0].endswith(b"(MESSAGES 1)"), "STATUS INBOX"
e2.logout()
typ, data = select(a, "Sent")
assert data == [b"1"], data
assert [int(x) for x in ok(a.uid("SEARCH", None, "ALL"))[0].split()] == [UIDS["report"]]
a.logout()

step("auditors: Archive (\\All) and Domains/")
r = connect("root", "root-password")
listing = ok(r.list('""', "*"))
assert any(b"\\All" in l and l.endswith(b"Archive") for l in listing), listing
typ, data = select(r, "Archive")
assert typ == "OK" and int(data[0]) >= 5, data
typ, data = select(r, "Domains/example.ch")
assert data == [b"2"], data  # the Grüße message and the IDLE test copy of it
r.logout()
d = connect("de-audit", "de-password")
listing = ok(d.list('""', "*"))
assert any(l.endswith(b"Domains/example.de") for l in listing), listing
assert any(b"\\Noselect" in l and l.endswith(b"Domains") for l in listing), listing
typ, data = select(d, "Archive")
assert data == [b"1"], data
assert [int(x) for x in ok(d.uid("SEARCH", None, "ALL"))[0].split()] == [UIDS["rechnung"]]
typ, data = select(d, "Domains/example.ch")
assert typ == "NO", (typ, data)
d.logout()

# ---------------------------------------------------------------------------------------
step("byte-exact BODY[] for every edge fixture and a corpus sample")
e = connect("edge", "edge-password")
ok(select(e, "INBOX"))
manifest = [line.split("\t") for line in open(os.environ["MANIFEST"]).read().splitlines()]
splits = []
for uid, path in manifest:
    with open(path, "rb") as f:
        stored = f.read()
    body = fetch_one(e, uid, "BODY.PEEK[]")
    # IMAP strings cannot carry NUL: sent as 0x80 (BINARY[] below is exact).
    assert body == stored.replace(b"\x00", b"\x80"), path
    assert fetch_one(e, uid, "BINARY.PEEK[]") == stored, path
    size_line = fetch_line(e, uid, "RFC822.SIZE")
    assert f"RFC822.SIZE {len(stored)}" in size_line, (path, size_line)
    # HEADER and TEXT split the message where the header ends, losing nothing.
    header = fetch_one(e, uid, "BODY.PEEK[HEADER]")
    text = fetch_one(e, uid, "BODY.PEEK[TEXT]")
    if header + text != body:
        splits.append((path, len(header), len(text), len(body)))
    # Structure must never fail, whatever the bytes.
    fetch_line(e, uid, "BODYSTRUCTURE")
    fetch_line(e, uid, "ENVELOPE")
print(f"   {len(manifest)} messages byte-exact")
# All of them in one command: answered by several reading threads, sent in order.
typ, data = e.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert typ == "OK", (typ, data)
answers = [d for d in data if isinstance(d, tuple)]
assert len(answers) == len(manifest), (len(answers), len(manifest))
for n, ((head, body), (uid, path)) in enumerate(zip(answers, manifest), start=1):
    assert head.startswith(f"{n} (".encode()) and f"UID {uid} ".encode() in head, (n, head, uid)
    with open(path, "rb") as f:
        assert body == f.read().replace(b"\x00", b"\x80"), path
assert not splits, splits
e.logout()

# ---------------------------------------------------------------------------------------
step("bad input gets BAD and the session survives")
raw = Raw()
raw.send(b"a1 FROBNICATE\r\n")
assert raw.until_tagged("a1")[-1].startswith("a1 BAD"), "unknown command"
raw.send(b"garbage without a command\r\n")
line = raw.line()
assert " BAD " in line or line.startswith("* BAD"), line
raw.send(b"a2 SELECT INBOX\r\n")
assert raw.until_tagged("a2")[-1].startswith("a2 BAD"), "SELECT before login"
raw.send(b"a3 LOGIN erika erika-pw\r\n")
assert raw.until_tagged("a3")[-1].startswith("a3 OK")
raw.send(b"a4 FETCH 1 BODY[]\r\n")
assert raw.until_tagged("a4")[-1].startswith("a4 BAD"), "FETCH without SELECT"
raw.send(b"a5 SELECT INBOX\r\n")
assert raw.until_tagged("a5")[-1].startswith("a5 OK")
for bad in [b"a6 FETCH x:y BODY[]", b"a7 FETCH 1 BODY[9999999999999]", b"a8 SEARCH FROM",
            b"a9 UID FETCH 1 (BODY[HEADER.FIELDS ()])", b"b1 " + b"X" * 70000]:
    tag = bad.split(b" ")[0].decode()
    raw.send(bad + b"\r\n")
    last = raw.until_tagged(tag)[-1]
    assert last.startswith(tag + " BAD"), (bad[:40], last)
raw.send(b"b0 LOGIN {100000}\r\n")
assert raw.until_tagged("b0")[-1].startswith("b0 BAD"), "literal over the limit"
raw.send(b"b2 FETCH 99 (UID)\r\n")
assert raw.until_tagged("b2")[-1].startswith("b2 OK"), "a number beyond EXISTS is ignored"
raw.send(b"b3 SEARCH SUBJECT \"unterminated\r\n")
raw.send(b"b4 NOOP\r\n")
lines = raw.until_tagged("b4")
assert lines[-1].startswith("b4 OK"), lines
# SASL-IR on a fresh connection.
raw2 = Raw()
ir = base64.b64encode(b"\x00alice\x00alice-pw").decode()
raw2.send(f"c1 AUTHENTICATE PLAIN {ir}\r\n".encode())
assert raw2.until_tagged("c1")[-1].startswith("c1 OK"), "SASL-IR"
raw2.send(b"c2 LOGOUT\r\n")
lines = raw2.until_tagged("c2")
assert lines[0].startswith("* BYE") and lines[-1].startswith("c2 OK"), lines

step("AUTHENTICATE PLAIN with a continuation, STARTTLS and implicit TLS")
p = imaplib.IMAP4("127.0.0.1", PORT)
ok(p.authenticate("PLAIN", lambda _: b"\x00erika\x00erika-pw"))
ok(select(p, "INBOX"))
p.logout()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = imaplib.IMAP4("127.0.0.1", PORT)
ok(s.starttls(ssl_context=ctx))
assert "STARTTLS" not in s.capabilities, s.capabilities
ok(s.login("erika", "erika-pw"))
ok(s.noop())
s.logout()
t = imaplib.IMAP4_SSL("127.0.0.1", IMAPS_PORT, ssl_context=ctx)
ok(t.login("erika", "erika-pw"))
ok(select(t, "INBOX"))
t.logout()

if os.environ.get("NONLOCAL"):
    step("not loopback: LOGINDISABLED until STARTTLS")
    host, port = os.environ["NONLOCAL"].split()
    n = imaplib.IMAP4(host, int(port))
    assert "LOGINDISABLED" in n.capabilities and "STARTTLS" in n.capabilities, n.capabilities
    assert "AUTH=PLAIN" not in n.capabilities, n.capabilities
    try:
        n.login("erika", "erika-pw")
        raise AssertionError("LOGIN accepted in plain text")
    except imaplib.IMAP4.error as e:
        assert "PRIVACYREQUIRED" in str(e), e
    typ, data = n._simple_command("AUTHENTICATE", "PLAIN", base64.b64encode(b"\x00erika\x00erika-pw").decode())
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[-1], (typ, data)
    ok(n.starttls(ssl_context=ctx))
    assert "LOGINDISABLED" not in n.capabilities and "AUTH=PLAIN" in n.capabilities, n.capabilities
    ok(n.login("erika", "erika-pw"))
    n.logout()

print("all IMAP checks passed")
