#!/usr/bin/env python3
"""Scripts derived from imaptest's own, in a copy of its test directory, for what a
read-only archive can check of a script that cannot pass as written.

fetch-envelope-distinct: fetch-envelope without its message 3, a byte-identical copy of
message 2. The archive keeps one message per content, so a mailbox holds one of the two and
every later message number moves down by one; the ENVELOPE expected of each remaining
message is checked unchanged.

usage: variants.py TESTDIR"""
import os, re, sys


def split_mbox(data):
    """Messages of an mbox as preload.py splits them: (From_ line, body lines)."""
    messages = []
    for line in data.split(b"\n"):
        if line.startswith(b"From ") and (not messages or messages[-1][1]):
            messages.append((line, []))
        elif messages:
            messages[-1][1].append(line)
    return messages


def fetch_envelope_distinct(testdir):
    src = os.path.join(testdir, "fetch-envelope")
    messages = split_mbox(open(src + ".mbox", "rb").read())
    seen, dropped, kept = set(), [], []
    for number, (from_line, body) in enumerate(messages, 1):
        key = b"\n".join(body)
        if key in seen:
            dropped.append(number)
        else:
            seen.add(key)
            kept.append(from_line + b"\n" + key)
    if dropped != [3]:
        sys.exit("fetch-envelope.mbox changed: duplicates %r, expected [3]" % dropped)
    out = []
    for line in open(src, encoding="utf-8").read().split("\n"):
        m = re.match(r"\* (\d+) FETCH (.*)", line)
        if m:
            n = int(m.group(1))
            if n in dropped:
                continue
            line = "* %d FETCH %s" % (n - sum(d < n for d in dropped), m.group(2))
        out.append(line)
    dst = os.path.join(testdir, "fetch-envelope-distinct")
    open(dst, "w", encoding="utf-8").write("\n".join(out))
    open(dst + ".mbox", "wb").write(b"\n".join(kept))


fetch_envelope_distinct(sys.argv[1])
