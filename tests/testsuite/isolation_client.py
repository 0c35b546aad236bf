"""The isolation matrix, as an attacker with a valid account probes it over IMAPS.

Driven by tests/testsuite/isolation.rs against a real `mailvault serve`. For every IMAP
command that takes a mailbox, a sequence set or a UID, the answer about another user's
message (or another domain's, for an auditor) must be indistinguishable from the answer
about a UID that holds nothing at all: no content, count, size, flag or existence leaks.
Positive controls (the owner asking the same) make sure each probe would see data if the
server leaked it. Every check is an assert; the first failure ends the script.

argv: smtp_port imaps_port uids_json
uids_json: {"alice": [...], "bob": [...], "other": [...], "future": N}
"""

import json
import re
import smtplib
import socket
import ssl
import sys

SMTP_PORT = int(sys.argv[1])
IMAPS_PORT = int(sys.argv[2])
UIDS = json.loads(sys.argv[3])
PASSWORD = "correct horse battery"


def step(name):
    print(f"== {name}", flush=True)


class Client:
    """A raw IMAP client over TLS: sends one command, returns every line up to the tagged
    one (literals inlined), so nothing the server says escapes the comparison."""

    def __init__(self, user):
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", IMAPS_PORT), timeout=60)
        self.sock = tls.wrap_socket(raw)
        self.buf = b""
        self.n = 0
        greeting = self.line()
        assert greeting.startswith(b"* OK"), greeting
        tagged = self.cmd(f'LOGIN {user} "{PASSWORD}"')[-1]
        assert tagged.startswith(b"OK"), (user, tagged)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        # A literal: its bytes follow, then the rest of the line.
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            size = int(m.group(1))
            while len(self.buf) < size:
                chunk = self.sock.recv(65536)
                assert chunk, "server closed the connection in a literal"
                self.buf += chunk
            literal, self.buf = self.buf[:size], self.buf[size:]
            return line + b"\r\n" + literal + self.line()
        return line

    def cmd(self, text):
        self.n += 1
        tag = f"i{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.line()
            # ESEARCH quotes the tag: ours too, not the server's.
            lines.append(line.replace(b'(TAG "' + tag + b'")', b'(TAG "<tag>")'))
            if line.startswith(tag + b" "):
                # The tag is ours, not the server's: drop it so answers compare.
                lines[-1] = line[len(tag) + 1 :]
                return lines

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (AssertionError, OSError):
            pass
        self.sock.close()


def normalized(lines, *uids):
    """An answer with the probed UIDs and mailbox names replaced by placeholders."""
    out = []
    for line in lines:
        for uid in uids:
            line = re.sub(rb"(?<![0-9])" + str(uid).encode() + rb"(?![0-9])", b"<uid>", line)
        out.append(line)
    return out


def fetch_data(lines):
    return [l for l in lines if re.match(rb"\* \d+ FETCH", l)]


def numbers(lines, prefix):
    """The numbers of untagged `* PREFIX …` lines (SEARCH, SORT, THREAD)."""
    found = []
    for l in lines:
        if l.startswith(b"* " + prefix):
            found += [int(n) for n in re.findall(rb"\d+", l[len(prefix) + 2 :])]
    return found


def deliver(sender, rcpt, raw):
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=60) as s:
        s.sendmail(sender, [rcpt], raw)


def same_for_all(client, template, probes, what):
    """The answers to `template` for each probed UID, all alike; returns one of them."""
    answers = {}
    for uid in probes:
        answers[uid] = normalized(client.cmd(template.format(uid=uid)), uid)
    first = answers[probes[0]]
    for uid, answer in answers.items():
        assert answer == first, f"{what}: {template!r} tells UID {uid} apart:\n{answer}\nvs\n{first}"
    return first


UID_PROBES = [
    "UID FETCH {uid} (FLAGS)",
    "UID FETCH {uid} (UID RFC822.SIZE INTERNALDATE)",
    "UID FETCH {uid} (BODY.PEEK[])",
    "UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])",
    "UID FETCH {uid} (BODY.PEEK[1] BODY.PEEK[TEXT])",
    "UID FETCH {uid} (BODYSTRUCTURE ENVELOPE)",
    "UID FETCH {uid} (BINARY.SIZE[1] BINARY.PEEK[1])",
    "UID FETCH {uid} (RFC822.HEADER)",
    "UID FETCH {uid}:{uid},{uid} (FLAGS)",
    "UID SEARCH UID {uid}",
    "UID SEARCH RETURN (COUNT MIN MAX ALL) UID {uid}",
    "UID SORT (SIZE) UTF-8 UID {uid}",
    "UID THREAD REFERENCES UTF-8 UID {uid}",
    "UID STORE {uid} +FLAGS (\\Seen)",
    "UID COPY {uid} Sent",
    "UID MOVE {uid} Sent",
    "UID EXPUNGE {uid}",
]

# Words, addresses and sizes that only the other side's messages have: searching for them
# must answer as searching for something nobody has.
CONTENT_PROBES = [
    "UID SEARCH TEXT {word}",
    "UID SEARCH BODY {word}",
    "UID SEARCH SUBJECT {word}",
    "UID SEARCH HEADER Message-ID {msgid}",
    "UID SEARCH FROM {sender}",
    "UID SEARCH TO {rcpt}",
    "UID SEARCH OR TEXT {word} SUBJECT {word}",
    "UID SEARCH RETURN (COUNT) TEXT {word}",
    "UID SORT (ARRIVAL) UTF-8 TEXT {word}",
    "UID THREAD REFERENCES UTF-8 TEXT {word}",
]

MAILBOX_PROBES = [
    "SELECT {box}",
    "EXAMINE {box}",
    "STATUS {box} (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
    'LIST "" {box}',
    'LSUB "" {box}',
]


def probe_uids(client, mailbox, hidden, owned, what):
    """Every UID probe in `mailbox`: hidden UIDs answer as a UID nobody has."""
    lines = client.cmd(f"EXAMINE {mailbox}")
    assert lines[-1].startswith(b"OK"), (what, lines)
    nothing = [UIDS["future"]]
    for template in UID_PROBES:
        answer = same_for_all(client, template, hidden + nothing, what)
        assert not fetch_data(answer), (what, template, answer)
        assert not numbers(answer, b"SEARCH") and not numbers(answer, b"SORT"), (what, answer)
    # Positive control: the same probes on an owned UID do see it.
    if owned:
        uid = owned[0]
        assert fetch_data(client.cmd(f"UID FETCH {uid} (BODY.PEEK[])")), (what, uid)
        assert numbers(client.cmd(f"UID SEARCH UID {uid}"), b"SEARCH") == [uid], (what, uid)


def probe_content(client, mailbox, secret, what, expect_visible):
    client.cmd(f"EXAMINE {mailbox}")
    nobody = {"word": "qqqnosuchwordqqq", "msgid": "<nobody@nowhere.example>",
              "sender": "nobody@nowhere.example", "rcpt": "nobody@nowhere.example"}
    for template in CONTENT_PROBES:
        hidden = normalized(client.cmd(template.format(**secret)))
        empty = normalized(client.cmd(template.format(**nobody)))
        if expect_visible:
            assert hidden != empty, f"{what}: control {template!r} found nothing: {hidden}"
        else:
            assert hidden == empty, f"{what}: {template!r} leaks:\n{hidden}\nvs\n{empty}"


def probe_mailboxes(client, names, what):
    # Every probe starts with a mailbox selected: a SELECT or EXAMINE then first says
    # `* OK [CLOSED]` (RFC 7162), whatever the box it names, so the answers compare.
    for template in MAILBOX_PROBES:
        client.cmd("EXAMINE INBOX")
        baseline = [l.replace(b"qqqnosuchbox", b"<box>") for l in client.cmd(template.format(box="qqqnosuchbox"))]
        for name in names:
            quoted = '"' + name + '"'
            client.cmd("EXAMINE INBOX")
            answer = client.cmd(template.format(box=quoted))
            answer = [l.replace(name.encode(), b"<box>") for l in answer]
            assert answer == baseline, f"{what}: {template} {name!r} answers\n{answer}\nnot as a missing box:\n{baseline}"


alice_box_names = [
    "bob", "Bob", "BOB/INBOX", "INBOX/bob", "INBOX.bob", "Users/bob", "user/bob", "user.bob",
    "#shared/bob", "~bob/INBOX", "Other Users/bob", "bob@y.example", "Domains", "Domains/y.example",
    "Domains/x.example", "Archive", "INBOX/../bob", "Sent/../../bob",
]

step("alice against bob's and a third party's mail")
alice = Client("alice")
listing = alice.cmd('LIST "" "*"')
assert not any(b"bob" in l.lower() or b"y.example" in l or b"Domains" in l for l in listing), listing
assert listing[-1].startswith(b"OK"), listing
for box in ["INBOX", "Sent"]:
    probe_uids(alice, box, UIDS["bob"] + UIDS["other"], UIDS["alice_" + box.lower()], f"alice {box}")
    probe_content(alice, box, {"word": "zebrafinch", "msgid": "<b1@y.example>",
                               "sender": "dave@z.example", "rcpt": "bob@y.example"}, f"alice {box}", False)
probe_mailboxes(alice, alice_box_names, "alice")
# Sequence numbers past the end answer alike, however far past.
alice.cmd("EXAMINE INBOX")
inbox_count = len(UIDS["alice_inbox"])
assert normalized(alice.cmd(f"FETCH {inbox_count + 1} (FLAGS)"), inbox_count + 1) == normalized(
    alice.cmd(f"FETCH {inbox_count + 50} (FLAGS)"), inbox_count + 50)
# Whole-mailbox answers hold only alice's own UIDs.
everything = alice.cmd("UID FETCH 1:* (UID)")
assert sorted(int(n) for n in re.findall(rb"UID (\d+)", b"".join(fetch_data(everything)))) == UIDS["alice_inbox"], everything
assert numbers(alice.cmd("UID SEARCH ALL"), b"SEARCH") == UIDS["alice_inbox"]
assert sorted(numbers(alice.cmd("UID THREAD REFERENCES UTF-8 ALL"), b"THREAD")) == UIDS["alice_inbox"]
assert sorted(numbers(alice.cmd("UID SORT (SIZE) UTF-8 ALL"), b"SORT")) == UIDS["alice_inbox"]
alice.cmd("EXAMINE Sent")
assert sorted(numbers(alice.cmd("UID THREAD REFERENCES UTF-8 ALL"), b"THREAD")) == UIDS["alice_sent"]

step("bob's new mail does not show in alice's selected mailbox or STATUS")
alice.cmd("EXAMINE INBOX")
status_before = alice.cmd("STATUS Sent (MESSAGES UNSEEN)")
deliver("dave@z.example", "bob@y.example",
        b"From: dave@z.example\r\nTo: bob@y.example\r\nSubject: zebrafinch again\r\n\r\nzebrafinch\r\n")
noop = alice.cmd("NOOP")
assert not any(b"EXISTS" in l or b"RECENT" in l or b"FETCH" in l for l in noop), noop
assert alice.cmd("STATUS Sent (MESSAGES UNSEEN)") == status_before
alice.close()

step("positive control: bob sees his own mail with the same probes")
bob = Client("bob")
bob.cmd("EXAMINE INBOX")
assert fetch_data(bob.cmd(f"UID FETCH {UIDS['bob'][0]} (BODY.PEEK[])"))
probe_content(bob, "INBOX", {"word": "zebrafinch", "msgid": "<b1@y.example>",
                             "sender": "dave@z.example", "rcpt": "bob@y.example"}, "bob", True)
probe_uids(bob, "INBOX", UIDS["alice_inbox"] + UIDS["other"], [UIDS["bob"][0]], "bob INBOX")
bob.close()

step("auditor of x.example against y.example")
ax = Client("audit-x")
listing = ax.cmd('LIST "" "*"')
assert any(l.endswith(b"Domains/x.example") for l in listing), listing
assert not any(b"y.example" in l or b"z.example" in l for l in listing), listing
x_uids = sorted(UIDS["alice_inbox"] + UIDS["alice_sent"])
for box in ["Archive", '"Domains/x.example"']:
    ax.cmd(f"EXAMINE {box}")
    assert numbers(ax.cmd("UID SEARCH ALL"), b"SEARCH") == x_uids, box
    probe_uids(ax, box, UIDS["bob"] + UIDS["other"], x_uids, f"audit-x {box}")
    probe_content(ax, box, {"word": "zebrafinch", "msgid": "<b1@y.example>",
                            "sender": "dave@z.example", "rcpt": "bob@y.example"}, f"audit-x {box}", False)
probe_mailboxes(ax, ["Domains/y.example", "Domains/z.example", "Domains/example", "Domains/x.example/../y.example",
                     "bob", "Domains/Y.EXAMPLE"], "audit-x")
ax.close()

step("auditor of y.example against x.example")
ay = Client("audit-y")
ay.cmd("EXAMINE Archive")
y_uids = numbers(ay.cmd("UID SEARCH ALL"), b"SEARCH")
assert set(UIDS["bob"]) <= set(y_uids) and not set(y_uids) & set(x_uids + UIDS["other"]), y_uids
probe_uids(ay, "Archive", x_uids + UIDS["other"], UIDS["bob"], "audit-y Archive")
probe_content(ay, "Archive", {"word": "appleorchard", "msgid": "<a1@x.example>",
                              "sender": "carol@z.example", "rcpt": "alice@x.example"}, "audit-y", False)
probe_mailboxes(ay, ["Domains/x.example"], "audit-y")
ay.close()
print(json.dumps({"done": True}))
