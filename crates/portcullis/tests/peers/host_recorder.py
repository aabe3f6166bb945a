"""A loopback HTTP server that records the Host header of every request, for the URL tests.

Usage: host_recorder.py PORT LOGFILE. Binds 127.0.0.1:PORT; answers every GET with a page
naming the Host it was asked for, and appends that Host (one per line) to LOGFILE, so a test
can prove which hosts a fetch server reached and which it never did.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        host = self.headers.get("Host", "")
        with open(LOG, "a") as f:
            f.write(host + "\n")
        body = f"<html><body><p>PAGE-FROM {host}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
