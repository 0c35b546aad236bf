"""A test RFC 3161 time-stamping authority over HTTP: each POSTed query is piped through
`openssl ts -reply -config TSA_CNF` and the response returned (application/timestamp-reply).

Usage: tsa_server.py TSA_CNF [MODE]
Binds a free loopback port and prints `port <n>` on stdout; serves until stdin closes.
MODE `garbage` answers every query with bytes that are not a response (a broken TSA)."""

import http.server
import os
import subprocess
import sys
import tempfile
import threading

CONFIG = sys.argv[1]
MODE = sys.argv[2] if len(sys.argv) > 2 else "openssl"
MAX_QUERY = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_QUERY or self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_error(400)
            return
        query = self.rfile.read(length)
        if MODE == "garbage":
            reply = b"\x30\x03\x02\x01\x07 not a time-stamp response"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                q, r = os.path.join(tmp, "q.tsq"), os.path.join(tmp, "r.tsr")
                with open(q, "wb") as f:
                    f.write(query)
                done = subprocess.run(
                    ["openssl", "ts", "-reply", "-config", CONFIG, "-queryfile", q, "-out", r],
                    capture_output=True,
                )
                if done.returncode != 0:
                    self.send_error(500, done.stderr.decode(errors="replace")[:200])
                    return
                with open(r, "rb") as f:
                    reply = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


# openssl ts -reply increments the serial file: one query at a time.
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
