#!/usr/bin/env python3
"""Soak: steady load plus chaos against the real gatehouse binary.

    python3 benches/soak/soak.py --binary target/release/gatehouse --minutes 10

Runs three upstreams (Python, on loopback), one gatehouse with an admin
listener and a JSON access log, keep-alive load from --clients threads, and
every --chaos-every seconds one chaos action in turn: a target killed (and
restarted 5 s later), a reload, an invalid reload (the running config must
stay), a cache purge. Every 10 s it samples requests, errors by kind, RSS and
open fds of the gatehouse process. At the end it checks that the access log
has exactly one line per answered request. Prints a Markdown report.
"""
import argparse, http.client, json, os, signal, socket, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "max-age=5")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, tries=100):
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)


def config(ports, proxy, admin, log, broken=False):
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    text = f"""server: {{ listen: ["127.0.0.1:{proxy}"], threads: 1, grace_period: 2s }}
admin: {{ listen: "127.0.0.1:{admin}" }}
logging: {{ level: warn, access_log: "{log}", format: json }}
cache: {{ max_size: 16MiB }}
upstreams:
  pool:
    targets: [{targets}]
    retries: 2
    retry_on: [connect, reset, timeout, 502, 503, 504]
    passive_health: {{ consecutive_failures: 3, eject_for: 5s }}
    health_check: {{ path: /health, interval: 1s }}
routes:
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: pool }}
  - {{ name: cached, match: {{ path_prefix: /static }}, upstream: pool, cache: true }}
"""
    return text + ("  - { name: broken, upstream: missing }\n" if broken else "")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = {}

    def add(self, kind):
        with self.lock:
            if kind == "ok":
                self.ok += 1
            else:
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self):
        with self.lock:
            return self.ok, dict(self.errors)


def client(port, stats, stop, n):
    conn = None
    paths = ["/api/items/1", "/static/logo"]
    i = 0
    while not stop.is_set():
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", paths[(i + n) % 2])
            r = conn.getresponse()
            r.read()
            stats.add("ok" if r.status == 200 else f"status {r.status}")
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # a failed request: counted by kind
            stats.add(type(e).__name__)
            if conn:
                conn.close()
            conn = None


def proc_sample(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/gatehouse")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--chaos-every", type=float, default=20)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gh-soak-")
    ports = [free_port() for _ in range(3)]
    proxy, admin = free_port(), free_port()
    log = os.path.join(work, "access.log")
    cfg = os.path.join(work, "gatehouse.yaml")
    open(cfg, "w").write(config(ports, proxy, admin, log))
    ups = {p: subprocess.Popen([sys.executable, "-c", UPSTREAM, str(p)]) for p in ports}
    gh = subprocess.Popen([a.binary, "-c", cfg], stderr=open(os.path.join(work, "gatehouse.err"), "w"))
    # Load starts once the targets and the proxy listen: a target still
    # starting would count as the gateway's error.
    for port in [*ports, proxy]:
        wait_port(port)
    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=client, args=(proxy, stats, stop, n), daemon=True) for n in range(a.clients)]
    for t in threads:
        t.start()
    start = time.time()
    end = start + a.minutes * 60
    samples, chaos_log = [], []
    actions = ["kill", "reload", "invalid reload", "purge"]
    next_chaos, next_sample, k = start + a.chaos_every, start, 0
    killed = None
    while time.time() < end:
        now = time.time()
        if now >= next_sample:
            ok, errs = stats.snapshot()
            rss, fds = proc_sample(gh.pid)
            samples.append((now - start, ok, sum(errs.values()), rss, fds))
            next_sample += 10
        if killed and now >= killed[1]:
            ups[killed[0]] = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(killed[0])])
            killed = None
        if now >= next_chaos:
            act = actions[k % len(actions)]
            k += 1
            before = sum(stats.snapshot()[1].values())
            if act == "kill" and killed is None:
                p = ports[k % 3]
                ups[p].kill()
                ups[p].wait()
                killed = (p, now + 5)
            elif act == "reload":
                gh.send_signal(signal.SIGHUP)
            elif act == "invalid reload":
                open(cfg, "w").write(config(ports, proxy, admin, log, broken=True))
                gh.send_signal(signal.SIGHUP)
                time.sleep(0.5)
                open(cfg, "w").write(config(ports, proxy, admin, log))
            elif act == "purge":
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
                c.request("POST", "/cache/purge?path=/static/logo")
                c.getresponse().read()
            chaos_log.append((now - start, act, before))
            next_chaos += a.chaos_every
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    time.sleep(1.0)
    ok, errs = stats.snapshot()
    rss, fds = proc_sample(gh.pid)
    samples.append((time.time() - start, ok, sum(errs.values()), rss, fds))
    gh.send_signal(signal.SIGTERM)
    gh.wait(timeout=30)
    for p in ups.values():
        p.kill()
    answered = ok + sum(v for k2, v in errs.items() if k2.startswith("status"))
    lines = sum(1 for _ in open(log)) if os.path.exists(log) else 0
    # Per chaos action: errors that appeared until the next action.
    print(f"# soak: {a.minutes:g} min, {a.clients} keep-alive clients, chaos every {a.chaos_every:g} s\n")
    print(f"requests ok: {ok}, errors: {sum(errs.values())} {errs or ''}")
    print(f"access-log lines: {lines} for {answered} answered requests ({'match' if lines == answered else 'MISMATCH'})\n")
    print("| t (s) | ok | errors | RSS MiB | fds |\n|---|---|---|---|---|")
    for t, o, e, r, f in samples:
        print(f"| {t:.0f} | {o} | {e} | {r:.1f} | {f} |")
    print("\n| t (s) | chaos action | errors after it |\n|---|---|---|")
    marks = chaos_log + [(time.time() - start, "end", sum(errs.values()))]
    for (t, act, before), (_, _, after) in zip(marks, marks[1:]):
        print(f"| {t:.0f} | {act} | {after - before} |")
    print(f"\nwork dir: {work}")


if __name__ == "__main__":
    main()
