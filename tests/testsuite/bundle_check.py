"""An independent check of a mailvault export bundle, written from docs/FORMAT.md alone:
Python's zipfile, hashlib, base64 and the `cryptography` and `blake3` packages, no mailvault
code. Checks the checkpoint's Ed25519 signature with the pinned key, then for every message:
the leaf's BLAKE3 content hash against the .eml, the RFC 9162 inclusion proof against the
signed root, and the SHA-256 column of messages.csv. Prints one JSON line per message and a
summary line; exits 1 on the first failure.

Usage: bundle_check.py BUNDLE.zip VERIFIER_KEY
"""

import base64
import csv
import hashlib
import io
import json
import sys
import zipfile

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(why):
    print(json.dumps({"ok": False, "why": why}))
    sys.exit(1)


def parse_key(text):
    # name+hexid+base64(0x01 || 32-byte Ed25519 public key)  (C2SP signed-note)
    name, key_id, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64)
    if len(raw) != 33 or raw[0] != 1:
        fail("not an Ed25519 verifier key")
    computed = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if computed.hex() != key_id:
        fail("key id does not match")
    return name, computed, Ed25519PublicKey.from_public_bytes(raw[1:])


def verify_note(note, key):
    name, key_id, public = key
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            fail("malformed signature line")
        signer, b64 = line[2:].split(" ", 1)
        blob = base64.b64decode(b64)
        if signer == name and blob[:4] == key_id:
            public.verify(blob[4:], text.encode())  # raises InvalidSignature
            origin, size, root = text.split("\n")[:3]
            return int(size), base64.b64decode(root)
    fail("no signature by the pinned key")


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf_hash, index, size, path, root):
    # RFC 9162 section 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    bundle, key_text = sys.argv[1], sys.argv[2]
    key = parse_key(key_text)
    z = zipfile.ZipFile(bundle)
    size, root = verify_note(z.read("checkpoint.txt").decode(), key)
    rows = {
        int(r["seq"]): r
        for r in csv.DictReader(io.StringIO(z.read("messages.csv").decode("utf-8"), newline=""))
    }
    checked = 0
    for name in sorted(n for n in z.namelist() if n.startswith("proofs/")):
        proof = json.loads(z.read(name))
        seq = proof["seq"]
        leaf = base64.b64decode(proof["leaf"])
        # leaf: version(1) kind(1) seq(8) time(8) content_hash(32) content_len(8) ...
        if leaf[0] != 1 or leaf[1] not in (1, 2) or int.from_bytes(leaf[2:10], "big") != seq:
            fail(f"{name}: not the leaf of message {seq}")
        eml = z.read(f"messages/{seq}.eml")
        if blake3.blake3(eml).digest() != leaf[18:50]:
            fail(f"messages/{seq}.eml: BLAKE3 differs from the leaf")
        if int.from_bytes(leaf[50:58], "big") != len(eml):
            fail(f"messages/{seq}.eml: length differs from the leaf")
        leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
        path = [base64.b64decode(h) for h in proof["proof"]]
        if not verify_inclusion(leaf_hash, seq - 1, size, path, root):
            fail(f"{name}: inclusion proof does not reach the signed root")
        if rows[seq]["sha256"] != hashlib.sha256(eml).hexdigest():
            fail(f"messages.csv: SHA-256 of message {seq} differs")
        print(json.dumps({"ok": True, "seq": seq}))
        checked += 1
    print(json.dumps({"ok": True, "messages": checked, "tree_size": size}))


main()
