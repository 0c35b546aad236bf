"""An independent check of a witness cosignature stored by mailvault: PyPI `tlog-scales`
(a Python transparency-log library, no mailvault code) parses the archive's checkpoint note,
appends the witness's cosignature line(s), and verifies the archive's Ed25519 note signature
and the witness's `cosignature/v1` signature with the two verifier keys.

Usage: witness_check.py CHECKPOINT.txt COSIGNATURE.txt LOG_KEY WITNESS_KEY
Prints one JSON line: {"ok": bool, "size": N, "cosigned_by": name, "time": T} or the reason.
"""

import json
import sys

from tlog_scales.signing import Vkey, VkeySet
from tlog_scales.tlog import Checkpoint


def main():
    checkpoint_path, cosignature_path, log_key, witness_key = sys.argv[1:5]
    note = open(checkpoint_path, encoding="utf-8").read()
    cosignature = open(cosignature_path, encoding="utf-8").read()
    cp = Checkpoint.from_text(note + cosignature)
    log = Vkey.from_string(log_key)
    witness = Vkey.from_string(witness_key)
    if witness.sig_type != 4:
        print(json.dumps({"ok": False, "why": "the witness key is not a cosignature/v1 key"}))
        return 1
    valid = VkeySet(log, witness).verify(cp.signatures, cp)
    by = {vkey.name: sig for vkey, sig in valid}
    if log.name not in by:
        print(json.dumps({"ok": False, "why": "the archive's signature does not verify"}))
        return 1
    if witness.name not in by:
        print(json.dumps({"ok": False, "why": "the witness's cosignature does not verify"}))
        return 1
    time = witness.get_verifier().get_timestamp(by[witness.name].payload)
    print(json.dumps({"ok": True, "size": cp.size, "cosigned_by": witness.name, "time": time}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
