#!/usr/bin/env python3
"""Counts the errors of an imaptest stress run and prints each to stderr with the command
it answered: each error names its command's tag, which is looked up in the clients'
rawlogs.

usage: stress-errors.py STRESS.LOG RAWLOG_DIR      prints: ERRORS"""
import glob, os, re, sys

log, rawdir = sys.argv[1], sys.argv[2]
errors = [l for l in open(log, errors="replace") if "Error" in l or "error" in l]
commands = {}
for path in glob.glob(os.path.join(rawdir, "rawlog.*")):
    for line in open(path, "rb"):
        m = re.match(rb"[0-9.]+ O: ([0-9]+\.[0-9]+) (.*)", line)
        if m:
            commands[m.group(1).decode()] = m.group(2).decode("latin-1").rstrip("\r\n")
for e in errors:
    m = re.search(r": (\d+\.\d+) (OK|NO|BAD)", e)
    command = commands.get(m.group(1), "") if m else ""
    print("error: " + e.strip() + (" [" + command + "]" if command else ""), file=sys.stderr)
print(len(errors))
