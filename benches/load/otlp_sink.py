#!/usr/bin/env python3
"""A no-op OTLP/HTTP collector for the tracing benchmark: answers every
POST /v1/traces with 200 after reading the body, and prints how many export
requests and bytes it took when stopped. Usage: otlp_sink.py [PORT]."""
import http.server
import signal
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
stats = {"posts": 0, "bytes": 0}


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        stats["posts"] += 1
        stats["bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"otlp sink: {stats['posts']} exports, {stats['bytes']} bytes", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Sink).serve_forever()
