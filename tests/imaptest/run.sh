#!/bin/bash
# Dovecot's imaptest against `mailvault serve`: the read-only scripted tests, then (with
# --stress) imaptest's stress mode with read-only commands. docs/TESTING.md §imaptest has the
# results and says why each exception is one.
#
# usage: tests/imaptest/run.sh IMAPTEST [--stress [CLIENTS SECS MESSAGES]] [TEST...]
#   IMAPTEST   imaptest binary built by build-imaptest.sh (its scripts: ../tests next to it,
#              or TESTDIR=...)
#   TEST...    only these scripts (default: every script in scripts.txt)
#   --stress   also run the stress test: CLIENTS clients (20) for SECS seconds (60) on a
#              mailbox of MESSAGES generated messages (3000); --stress-only skips the scripts
# env: MAILVAULT  the binary (default: target/debug/mailvault of this checkout)
#      KEEP=1     keep the temporary directory (store, logs, outputs)
#      STRESS_ARGS more imaptest arguments for the stress runs
# Exit status 0 when every script ends as scripts.txt expects and the stress run has no error.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
IMAPTEST=$(realpath "$1"); shift
TESTDIR=${TESTDIR:-$(dirname "$IMAPTEST")/tests}
MAILVAULT=${MAILVAULT:-$ROOT/target/debug/mailvault}
SCRIPTS=1 STRESS=0 CLIENTS=20 SECS=60 MESSAGES=3000
case ${1:-} in
  --stress|--stress-only)
    STRESS=1; [ "$1" = --stress-only ] && SCRIPTS=0; shift
    if [ $# -ge 3 ]; then CLIENTS=$1 SECS=$2 MESSAGES=$3; shift 3; fi ;;
esac
ONLY="$*"
[ -x "$IMAPTEST" ] || { echo "not an executable: $IMAPTEST" >&2; exit 2; }
[ -d "$TESTDIR" ] || { echo "no imaptest scripts in $TESTDIR (set TESTDIR)" >&2; exit 2; }
[ -x "$MAILVAULT" ] || { echo "no $MAILVAULT: cargo build -p mailvault (or set MAILVAULT)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailvault-imaptest.XXXXXX")
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
PASSWORD=imaptest-password

# Free loopback ports for LMTP and IMAP.
read -r LMTP IMAP < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
cat > "$WORK/mailvault.toml" <<EOF
[intake]
lmtp = "127.0.0.1:$LMTP"
smtp = "none"
[imap]
plain = "127.0.0.1:$IMAP"
allow_plaintext_login = true   # loopback test only
tls = "none"
[imap.limits]
# imaptest's stress clients all come from 127.0.0.1 and log in again and again.
max_connections_per_ip = $((CLIENTS * 2 + 10))
max_unauthenticated_per_ip = $((CLIENTS * 2 + 10))
max_connections_per_user = $((CLIENTS * 2 + 10))
[admin]
listen = "none"
[server]
log = "warn"
EOF
"$MAILVAULT" serve --data "$WORK/data" --create --config "$WORK/mailvault.toml" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $IMAP), 1).close()" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "mailvault serve exited:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.2
done

add_user() {   # name: a user who sees mail to name@example.org
  echo "$PASSWORD" | "$MAILVAULT" user add --data "$WORK/data" --password-stdin \
    --address "$1@example.org" "$1" > /dev/null || { echo "user add $1 failed" >&2; exit 1; }
}

status=0
if [ "$SCRIPTS" = 1 ]; then
  # imaptest's scripts, ours (scripts/) and the generated variants, side by side.
  cp -r "$TESTDIR" "$WORK/tests"
  cp -r "$HERE"/scripts/. "$WORK/tests/"
  python3 "$HERE/variants.py" "$WORK/tests"
  declare -A EXPECT WHY
  TESTS=()
  while read -r name expect why; do
    case $name in ''|'#'*) continue ;; esac
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    TESTS+=("$name"); EXPECT[$name]=$expect; WHY[$name]=$why
  done < "$HERE/scripts.txt"
  for t in "${TESTS[@]}"; do add_user "$t"; done
  python3 "$HERE/preload.py" "$WORK/tests" --lmtp "127.0.0.1:$LMTP" --rcpt '{test}@example.org' \
    "${TESTS[@]}" > "$WORK/preload.log" || { cat "$WORK/preload.log" >&2; exit 1; }
  mkdir "$WORK/out"
  mismatches=0
  for t in "${TESTS[@]}"; do
    IMAPTEST_PRELOADED=1 timeout 120 "$IMAPTEST" host=127.0.0.1 port="$IMAP" \
      user="$t@example.org" pass="$PASSWORD" box=INBOX test="$WORK/tests/$t" \
      > "$WORK/out/$t" 2>&1
    # "N test groups: F failed, S skipped ..." and "<kind>: f/n individual commands failed"
    groups=$(sed -n 's/^[0-9]* test groups: \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2/p' "$WORK/out/$t")
    read -r failed ran < <(awk -F'[ /]' '/individual commands failed$/ { f += $(NF-4); n += $(NF-3) }
                                   END { print f + 0, n + 0 }' "$WORK/out/$t")
    if [ -z "$groups" ]; then outcome=error
    elif [ "${groups#* }" != 0 ] || [ "${ran:-0}" = 0 ]; then outcome=skip
    elif [ "${groups% *}" = 0 ]; then outcome=pass
    else outcome=fail; fi
    case ${EXPECT[$t]}:$outcome in
      pass:pass) echo "ok       $t ($ran commands)" ;;
      exception:fail) echo "expected $t: $failed of $ran commands fail (${WHY[$t]})" ;;
      skip:skip) echo "skipped  $t (${WHY[$t]})" ;;
      *) mismatches=$((mismatches + 1))
         echo "MISMATCH $t: $outcome ($failed of ${ran:-0} commands failed), expected ${EXPECT[$t]}"
         grep -v '^$' "$WORK/out/$t" | head -20 | sed 's/^/         /' ;;
    esac
  done
  echo "scripts: ${#TESTS[@]} run, $mismatches not as expected"
  [ "$mismatches" = 0 ] || status=1
fi

if [ "$STRESS" = 1 ]; then
  add_user stress
  python3 "$HERE/gen-mailbox.py" "$MESSAGES" --lmtp "127.0.0.1:$LMTP" --rcpt stress@example.org \
    || { echo "could not deliver the stress mailbox" >&2; exit 1; }
  # Only commands that read: no APPEND, STORE, EXPUNGE, COPY. checkpoint= makes the clients
  # compare their views of the mailbox; every error is counted (no error_quit).
  stress() {  # name, then env assignments for imaptest
    local name=$1; shift
    mkdir -p "$WORK/$name"
    (cd "$WORK/$name" && env "$@" timeout $((SECS + 120)) "$IMAPTEST" host=127.0.0.1 \
      port="$IMAP" user=stress@example.org pass="$PASSWORD" box=INBOX clients="$CLIENTS" \
      secs="$SECS" - list=50 status=50 select=100 uidfetch=50 fetch=100 fetch2=100,30 \
      search=50 sort=30 thread=20 logout=100 checkpoint=5 rawlog ${STRESS_ARGS:-}) \
      > "$WORK/$name.log" 2>&1
    echo $?
  }
  # As imaptest does it: its random SEARCHes check TEXT and BODY as substrings of text it
  # fetched, every other key against what the clients fetched. Every error counts.
  rc=$(stress as-is IMAPTEST_NO_TEXT_SEARCH=0)
  errors=$(python3 "$HERE/stress-errors.py" "$WORK/as-is.log" "$WORK/as-is")
  echo "stress: $CLIENTS clients, $SECS s, $MESSAGES messages; exit $rc; $errors errors"
  grep -v '^ *$' "$WORK/as-is.log" | grep -v '^Error' | tail -6 | sed 's/^/  /'
  [ "$rc" = 0 ] && [ "$errors" = 0 ] || status=1
  [ "$status" = 0 ] || grep -h '^Error' "$WORK/as-is.log" | head -20 >&2
fi
exit $status
