#!/usr/bin/env python3
"""Memory of idle keep-alive client connections: marginal RSS per connection.

  python3 benches/load/idle.py [--binary B] [--conns 10000] [--targets routing,nginx]

For each target: start it (with the upstream nginx of run.py), open one
connection and finish one request on it (the baseline), then open CONNS more
connections that each finish one request and stay open, idle. Marginal RSS =
(RSS with every connection idle - baseline RSS) / CONNS. RSS is summed over
the proxy's processes (nginx master + worker). The client is this script
(non-blocking sockets, one request in flight per connection); it needs
RLIMIT_NOFILE above CONNS, which it raises itself.
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

REQUEST = b"GET /api/orders/7 HTTP/1.1\r\nHost: bench\r\n\r\n"


def one_request_each(n, port):
    """Opens n connections; each sends one request and reads its response."""
    socks = []
    sel = selectors.DefaultSelector()
    pending = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
        pending[s] = b""
        # Bounded in flight, so the accept queue never overflows.
        while len(pending) >= 256:
            drive(sel, pending)
    while pending:
        drive(sel, pending)
    return socks


def drive(sel, pending):
    for key, ev in sel.select(timeout=5):
        s = key.fileobj
        if ev & selectors.EVENT_WRITE:
            s.send(REQUEST)
            sel.modify(s, selectors.EVENT_READ)
            continue
        data = s.recv(4096)
        if not data:
            raise RuntimeError("connection closed before its response")
        pending[s] += data
        head, _, body = pending[s].partition(b"\r\n\r\n")
        if head and len(body) >= len(run.BODY):
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:40]!r}")
            sel.unregister(s)
            del pending[s]


def measure(proc, conns):
    base = one_request_each(1, run.PROXY_PORT)
    time.sleep(0.5)
    before = run.rss_kib(proc.pids(), "VmRSS")
    socks = one_request_each(conns, run.PROXY_PORT)
    time.sleep(1.0)
    after = run.rss_kib(proc.pids(), "VmRSS")
    for s in socks + base:
        s.close()
    return before, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(run.ROOT, "target/release/gatehouse"))
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--targets", default="routing,nginx")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    work = tempfile.mkdtemp(prefix="gh-idle-")
    with open(f"{work}/upstream.conf", "w") as f:
        f.write(run.upstream_conf(work))
    up = run.Proc("upstream", ["nginx", "-p", work, "-c", f"{work}/upstream.conf"], 1, run.UP_PORTS[0])
    try:
        for t in args.targets.split(","):
            if t == "nginx":
                conf = run.proxy_conf(work).replace("worker_connections 4096", f"worker_connections {want}")
                conf = conf.replace("events {", f"worker_rlimit_nofile {want};\nevents {{")
                with open(f"{work}/proxy.conf", "w") as f:
                    f.write(conf)
                cmd = ["nginx", "-p", work, "-c", f"{work}/proxy.conf"]
            else:
                path = run.gatehouse_conf(work, t)
                text = open(path).read().replace(
                    "server:\n", f"server:\n  max_connections: {want}\n", 1)
                open(path, "w").write(text)
                cmd = ["sh", "-c", f"ulimit -n {want}; exec {args.binary} -c {path}"]
            proc = run.Proc(t if t == "nginx" else f"gatehouse-{t}", cmd, 1, run.PROXY_PORT)
            try:
                before, after = measure(proc, args.conns)
            finally:
                proc.stop()
            per = (after - before) / args.conns
            print(f"{t:10s} {args.conns} idle connections: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB,"
                  f" {per:.2f} KiB per connection", flush=True)
            time.sleep(0.5)
    finally:
        up.stop()


if __name__ == "__main__":
    main()
