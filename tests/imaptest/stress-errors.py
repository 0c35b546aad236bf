#!/usr/bin/env python3
"""Counts the errors of an imaptest stress run and how many of them are expected of
mailvault: "SEARCH result missing" for a SEARCH with a TEXT or BODY key, which imaptest
checks as a substring of words it fetched while mailvault matches words (docs/SEARCH.md).
Each error names its command's tag; the command is looked up in the clients' rawlogs.

usage: stress-errors.py STRESS.LOG RAWLOG_DIR      prints: ERRORS EXPECTED"""
import glob, os, re, sys

log, rawdir = sys.argv[1], sys.argv[2]
errors = [l for l in open(log, errors="replace") if "Error" in l or "error" in l]
commands = {}
for path in glob.glob(os.path.join(rawdir, "rawlog.*")):
    for line in open(path, "rb"):
        m = re.match(rb"[0-9.]+ O: ([0-9]+\.[0-9]+) (.*)", line)
        if m:
            commands[m.group(1).decode()] = m.group(2).decode("latin-1").rstrip("\r\n")
expected = 0
for e in errors:
    m = re.search(r"SEARCH result missing seq \d+ \(uid \d+\): (\d+\.\d+) OK", e)
    command = commands.get(m.group(1), "") if m else ""
    if re.match(r"(UID )?SEARCH .*\b(TEXT|BODY) ", command):
        expected += 1
    else:
        print("unexpected: " + e.strip() + (" [" + command + "]" if command else ""), file=sys.stderr)
print(len(errors), expected)
