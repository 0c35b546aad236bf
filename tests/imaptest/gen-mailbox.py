#!/usr/bin/env python3
"""Writes an mbox of N generated messages for imaptest's stress mode: every message has its
own Message-ID (imaptest tracks messages by it), and they vary in what the stress commands
read: sizes from a few hundred bytes to ~40 KB, plain and multipart bodies, encoded words,
address lists, dates across years, and threads (In-Reply-To/References). Deterministic: the
same N gives the same bytes.

usage: gen-mailbox.py N (--mbox OUT.mbox | --lmtp HOST:PORT) [--rcpt ADDRESS]"""
import argparse, base64, random, smtplib

WORDS = ("archive invoice meeting report quarterly budget review draft contract schedule "
         "Rechnung Besprechung Vertrag Angebot Bericht Termin project release notes travel "
         "server backup restore incident summary agenda minutes proposal").split()
NAMES = ["Alice Example", "Bob Builder", "Carol Müller", "Dave O'Neil", "Erika Mustermann",
         "Frank", "Grace Hopper", "Hans Meier"]


def name_addr(rng, i):
    name = rng.choice(NAMES)
    local = name.split()[0].lower().replace("'", "")
    if any(ord(c) > 127 for c in name):
        enc = base64.b64encode(name.encode()).decode()
        name = "=?utf-8?b?%s?=" % enc
    elif " " in name:
        name = '"%s"' % name
    return "%s <%s%d@example.org>" % (name, local, i % 7)


def message(rng, i, rcpt):
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.2:
        subject = "Re: " + subject
    day = 1 + i % 28
    date = "%s, %d %s %d %02d:%02d:%02d +0%d00" % (
        rng.choice(["Mon", "Tue", "Wed", "Thu", "Fri"]), day,
        rng.choice(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]),
        2015 + i % 10, rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 2))
    head = ["From: %s" % name_addr(rng, i), "To: %s" % rcpt]
    if rng.random() < 0.3:
        head.append("Cc: %s, %s" % (name_addr(rng, i + 1), name_addr(rng, i + 2)))
    head += ["Subject: %s" % subject, "Date: %s" % date, "Message-ID: <stress-%d@mailvault.test>" % i]
    if i > 10 and rng.random() < 0.3:
        parent = rng.randint(max(0, i - 50), i - 1)
        head.append("In-Reply-To: <stress-%d@mailvault.test>" % parent)
        head.append("References: <stress-%d@mailvault.test>" % parent)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
             for _ in range(rng.choice([2, 10, 40, 100, 400]))]
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.3:
        boundary = "b%d" % i
        attachment = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(50, 3000)))).decode()
        head += ["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="%s"' % boundary]
        body = ("--%s\nContent-Type: text/plain; charset=utf-8\n\n%s\n--%s\n"
                "Content-Type: application/octet-stream; name=\"a%d.bin\"\n"
                "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n") % (
                    boundary, text, boundary, i, attachment, boundary)
    else:
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
        body = text
    return "\n".join(head) + "\n\n" + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("count", type=int)
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--mbox")
    out.add_argument("--lmtp")
    ap.add_argument("--rcpt", default="stress@example.org")
    a = ap.parse_args()
    rng = random.Random(14)
    messages = (message(rng, i, a.rcpt) for i in range(a.count))
    if a.mbox:
        with open(a.mbox, "w", encoding="utf-8") as f:
            for m in messages:
                f.write("From stress@example.org  Sat Jan  1 00:00:00 2000\n")
                # A body line starting with "From " would start a new message.
                f.write("\n".join((">" + l) if l.startswith("From ") else l for l in m.split("\n")))
                f.write("\n")
        return
    host, port = a.lmtp.rsplit(":", 1)
    lmtp = smtplib.LMTP(host, int(port))
    for m in messages:
        lmtp.sendmail("stress@example.org", [a.rcpt], m.replace("\n", "\r\n").encode())
    lmtp.quit()


main()
