#!/usr/bin/env python3
"""Side-by-side load benchmark: gatehouse against nginx as a reverse proxy.

Started by benches/load/run.sh (which installs wrk and nginx and builds the
release binary). Layout on a 2-core box:

  CPU 0: wrk (the load)
  CPU 1: the proxy under test (nginx, 1 worker / gatehouse, threads 1)
         and the upstream nginx (1 worker, 3 ports, fixed 28-byte body)

Targets are interleaved: every round runs each target once, so slow drifts
of the machine hit all of them alike; ratios are taken against the nginx
run of the same round, then summarised as median (min-max) over rounds.

CPU per request = (utime + stime of every process of the proxy, from
/proc/PID/stat, over the measured run) / requests completed.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import hmac
import hashlib
import base64

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = "gatehouse-bench-body-28bytes"  # 28 bytes
assert len(BODY) == 28

UP_PORTS = [18081, 18082, 18083]
PROXY_PORT = 18080
ADMIN_PORT = 18090
OTLP_PORT = 18091
REDIS_PORT = 18092
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
ROUTES = [("users", "/api/users", 18081), ("products", "/api/products", 18082), ("orders", "/api/orders", 18083)]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def wait_port(port, timeout=10.0):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise RuntimeError(f"port {port} did not open")


def pids_of(root_pid):
    """The process and its children (nginx master + workers)."""
    out = [root_pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
    except FileNotFoundError:
        pass
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total


def rss_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def token():
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": "bench-user", "exp": int(time.time()) + 86400, "scope": "orders:read"}).encode())
    sig = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


class Proc:
    def __init__(self, name, cmd, cpu, port, env=None, cwd=None):
        self.name = name
        full = ["taskset", "-c", str(cpu)] + cmd
        self.p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        wait_port(port)
        time.sleep(0.3)

    def pids(self):
        return pids_of(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            sig = signal.SIGINT if ("gatehouse" in self.name or "pingap" in self.name) else signal.SIGQUIT
            if "haproxy" in self.name:
                sig = signal.SIGTERM
            self.p.send_signal(sig)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def nginx_conf(work, name, body, workers=1):
    pid = os.path.join(work, f"{name}.pid")
    return f"""
daemon off;
master_process on;
worker_processes {workers};
pid {pid};
error_log {work}/{name}.error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {work}/{name}_body;
    proxy_temp_path {work}/{name}_proxy;
    fastcgi_temp_path {work}/{name}_fcgi;
    uwsgi_temp_path {work}/{name}_uwsgi;
    scgi_temp_path {work}/{name}_scgi;
{body}
}}
"""


def upstream_conf(work):
    servers = "\n".join(
        f"""    server {{ listen 127.0.0.1:{p} reuseport; location / {{ default_type text/plain; add_header Cache-Control "max-age=3600"; return 200 "{BODY}"; }} }}"""
        for p in UP_PORTS
    )
    return nginx_conf(work, "upstream", servers)


def proxy_conf(work, workers=1):
    ups = "\n".join(f"    upstream {n} {{ server 127.0.0.1:{p}; keepalive 128; }}" for n, _, p in ROUTES)
    locs = "\n".join(
        f"""        location {prefix}/ {{ proxy_pass http://{n}; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}"""
        for n, prefix, _ in ROUTES
    )
    return nginx_conf(work, "proxy", f"{ups}\n    server {{\n        listen 127.0.0.1:{PROXY_PORT};\n{locs}\n    }}", workers)


def gatehouse_conf(work, variant, threads=1, work_stealing=False, limit=100_000_000):
    lines = [
        "server:",
        f'  listen: ["127.0.0.1:{PROXY_PORT}"]',
        f"  threads: {threads}",
        f"  work_stealing: {'true' if work_stealing else 'false'}",
        f'  pid_file: "{work}/gh.pid"',
        f'  upgrade_sock: "{work}/gh.sock"',
        "logging:",
        "  level: error",
    ]
    # "policies": JWT + rate limit + metrics (admin listener) + JSON access
    # log to a file; "policies_quiet": the same without metrics and log;
    # "observed": routing only, with metrics and the access log.
    # "policies-traced0" / "-traced1": policies with `tracing` configured,
    # sample 0 (nothing traced) or 1 (every request, to otlp_sink.py).
    # "policies-redis" / "policies-redis-sync": policies with the per-sub
    # limit in Redis, exact (one call per request) or synced every 100 ms.
    if variant in ("policies", "observed") or variant.startswith("policies-"):
        lines += [f'  access_log: "{work}/access.log"', "  format: json"]
        lines += [f'admin: {{ listen: "127.0.0.1:{ADMIN_PORT}" }}']
    else:
        lines += ["  access_log: off"]
    if variant.startswith("policies"):
        lines += ["auth:", f'  jwt: {{ type: jwt, algorithms: [HS256], secret: "{SECRET}",'
                  " forward_claims: { sub: X-User-Id } }"]
        backend = ""
        if variant.startswith("policies-redis"):
            lines += [f'redis: {{ url: "redis://127.0.0.1:{REDIS_PORT}", timeout: 100ms }}']
            backend = ", backend: redis" + (", sync: 100ms" if variant.endswith("-sync") else "")
        lines += ["rate_limits:", f"  per_sub: {{ requests: {limit}, per: 1m, key: 'claim:sub'{backend} }}"]
    # "retry": every resilience key of an upstream configured but not
    # triggered (retries on resets/timeouts/statuses with their budget,
    # max_inflight, passive health); "split": orders split 50/50 between two
    # upstreams (one nginx port) with a sticky key absent from the request.
    if variant.startswith("policies-traced"):
        lines += ["tracing:", f'  otlp: "http://127.0.0.1:{OTLP_PORT}/v1/traces"', f"  sample: {variant[-1]}"]
    resilient = ""
    if variant == "retry":
        resilient = (", retries: 2, retry_on: [connect, reset, timeout, 502, 503, 504], retry_budget: 20%,"
                     " max_inflight: 100000, passive_health: { consecutive_failures: 5, eject_for: 30s }")
    lines += ["upstreams:"]
    for n, _, p in ROUTES:
        lines.append(f'  {n}: {{ targets: ["127.0.0.1:{p}"]{resilient} }}')
    if variant == "split":
        lines.append(f'  orders_b: {{ targets: ["127.0.0.1:{ROUTES[2][2]}"] }}')
    lines += ["routes:"]
    for n, prefix, _ in ROUTES:
        if variant == "split" and n == "orders":
            lines.append(f"  - {{ name: {n}, match: {{ path_prefix: {prefix} }}, split: [{{ upstream: orders, weight: 50 }},"
                         " { upstream: orders_b, weight: 50 }], split_key: header:X-User-Id }")
            continue
        extra = ""
        if variant.startswith("policies"):
            extra = ", auth: jwt, rate_limit: per_sub"
        if variant == "cache":
            extra = ", cache: { ttl: 1h }"
        lines.append(f"  - {{ name: {n}, match: {{ path_prefix: {prefix} }}, upstream: {n}{extra} }}")
    if variant == "routes10k":
        for i in range(10_000 - len(ROUTES)):
            kind = i % 50
            if kind == 0:
                m = f"{{ path_regex: '^/re{i}/[0-9]+$' }}"
            elif kind <= 10:
                m = f"{{ path: /svc{i}/exact }}"
            else:
                m = f"{{ path_prefix: /svc{i}/api }}"
            lines.append(f"  - {{ name: r{i}, match: {m}, upstream: users }}")
    path = os.path.join(work, f"gatehouse-{variant}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "total": re.compile(r"(\d+) requests in"),
    "p50": re.compile(r"50%\s+([\d.]+)(us|ms|s)"),
    "p99": re.compile(r"99%\s+([\d.]+)(us|ms|s)"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses: (\d+)"),
    "errors": re.compile(r"Socket errors: (.*)"),
}


def to_ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, secs, conns, headers, threads=1, timeout="2s"):
    cmd = ["taskset", "-c", "0", "wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", f"--timeout={timeout}",
           "--latency", url]
    for h in headers:
        cmd[5:5] = ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    r = {}
    r["rps"] = float(WRK_RE["rps"].search(out).group(1))
    r["total"] = int(WRK_RE["total"].search(out).group(1))
    m = WRK_RE["p50"].search(out)
    r["p50"] = to_ms(*m.groups())
    m = WRK_RE["p99"].search(out)
    r["p99"] = to_ms(*m.groups())
    m = WRK_RE["non2xx"].search(out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = WRK_RE["errors"].search(out)
    r["errors"] = m.group(1) if m else ""
    return r, out


def measure(proc, url, secs, conns, headers, strict=True):
    """`strict=False` (the memory run): slow answers under 1,000 connections
    get 10 s instead of wrk's 2 s, and socket errors are reported, not fatal."""
    timeout = "2s" if strict else "10s"
    wrk(url, 1, conns, headers, timeout=timeout)  # warm-up: connections, pools, cache fill
    pids = proc.pids()
    t0 = cpu_ticks(pids)
    r, out = wrk(url, secs, conns, headers, timeout=timeout)
    t1 = cpu_ticks(pids)
    if r["non2xx"] or (strict and r["errors"]):
        raise RuntimeError(f"{proc.name}: failures during the run:\n{out}")
    r["cpu_us"] = (t1 - t0) / CLK_TCK * 1e6 / max(r["total"], 1)
    r["hwm_mib"] = rss_kib(pids, "VmHWM") / 1024
    return r


def summary(values):
    med = statistics.median(values)
    return med, min(values), max(values)


def fmt(values, digits=2):
    med, lo, hi = summary(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gatehouse"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--targets", default="nginx,routing,policies,cache,routes10k")
    ap.add_argument("--label", default="", help="extra label for the gatehouse rows (build/lever under test)")
    ap.add_argument("--alt-binary", help="second gatehouse binary: targets named NAME@alt run it, interleaved with the rest")
    ap.add_argument("--rss-conns", type=int, default=1000, help="connections for the RSS run (0: skip)")
    ap.add_argument("--fixed-rate", action="store_true", help="also run oha at 50%% of nginx's max rate")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--threads", type=int, default=1, help="gatehouse server.threads (and nginx worker_processes)")
    ap.add_argument("--work-stealing", action="store_true", help="gatehouse server.work_stealing: true")
    ap.add_argument("--sut-cpus", default="1", help="CPUs the proxy under test may use (taskset list)")
    ap.add_argument("--build-pingap", action="store_true",
                    help="first build Pingap 0.13.1 into PINGAP_ROOT with cargo install (about 20 minutes)")
    args = ap.parse_args()
    if args.build_pingap:
        import peers
        peers.build_pingap()

    work = tempfile.mkdtemp(prefix="gh-bench-")
    procs = []
    try:
        for name, conf in [("upstream", upstream_conf(work))]:
            path = os.path.join(work, f"{name}.conf")
            with open(path, "w") as f:
                f.write(conf)
        up = Proc("upstream nginx", ["nginx", "-p", work, "-c", f"{work}/upstream.conf"], 1, UP_PORTS[0])
        procs.append(up)
        with open(os.path.join(work, "proxy.conf"), "w") as f:
            f.write(proxy_conf(work, args.threads))
        tok = token()
        targets = args.targets.split(",")
        url = f"http://127.0.0.1:{PROXY_PORT}"
        paths = {"nginx": "/api/orders/7", "routing": "/api/orders/7", "policies": "/api/orders/7",
                 "policies_quiet": "/api/orders/7", "observed": "/api/orders/7",
                 "cache": "/api/products/42", "routes10k": "/api/orders/7",
                 "retry": "/api/orders/7", "split": "/api/orders/7",
                 "haproxy": "/api/orders/7", "haproxy-policies": "/api/orders/7",
                 "pingap": "/api/orders/7", "pingap-policies": "/api/orders/7",
                 "policies-traced0": "/api/orders/7", "policies-traced1": "/api/orders/7",
                 "policies-redis": "/api/orders/7", "policies-redis-sync": "/api/orders/7"}
        auth = [f"Authorization: Bearer {tok}"]
        headers = {"policies": auth, "policies_quiet": auth, "haproxy-policies": auth, "pingap-policies": auth,
                   "policies-traced0": auth, "policies-traced1": auth,
                   "policies-redis": auth, "policies-redis-sync": auth}
        if any(t.split("@")[0] == "policies-traced1" for t in targets):
            # The collector shares CPU 0 with wrk, off the proxy's CPU.
            procs.append(Proc("otlp sink", [sys.executable, os.path.join(ROOT, "benches", "load", "otlp_sink.py"),
                                            str(OTLP_PORT)], "0", OTLP_PORT))
        if any(t.split("@")[0].startswith("policies-redis") for t in targets):
            # Redis shares CPU 0 with wrk, off the proxy's CPU.
            procs.append(Proc("redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                                        "--save", "", "--appendonly", "no"], "0", REDIS_PORT))
        results = {t: [] for t in targets}

        def base(t):
            return t.split("@")[0]

        def start(t):
            if t == "nginx":
                return Proc("nginx proxy", ["nginx", "-p", work, "-c", f"{work}/proxy.conf"], args.sut_cpus, PROXY_PORT)
            if t.startswith("haproxy"):
                import peers
                return Proc(t, peers.haproxy_cmd(work, t == "haproxy-policies"), args.sut_cpus, PROXY_PORT)
            if t.startswith("pingap"):
                import peers
                return Proc(t, peers.pingap_cmd(work, t == "pingap-policies"), args.sut_cpus, PROXY_PORT)
            binary = args.binary
            if t.endswith("@alt"):
                if not args.alt_binary:
                    sys.exit(f"target {t} needs --alt-binary")
                binary = args.alt_binary
            conf = gatehouse_conf(work, base(t), args.threads, args.work_stealing)
            return Proc(f"gatehouse {t}", [binary, "-c", conf], args.sut_cpus, PROXY_PORT)

        for rnd in range(args.rounds):
            for t in targets:
                p = start(t)
                try:
                    r = measure(p, url + paths[base(t)], args.seconds, args.conns, headers.get(base(t), []))
                finally:
                    p.stop()
                results[t].append(r)
                print(f"round {rnd + 1} {t:10s} {r['rps']:9.0f} req/s  {r['cpu_us']:6.1f} us/req  "
                      f"p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  HWM {r['hwm_mib']:.1f} MiB", flush=True)
                time.sleep(0.5)

        extra = {}
        if args.rss_conns:
            # Memory under many open connections: gatehouse with every policy on.
            for t in ["nginx", "haproxy-policies", "pingap-policies", "policies", "policies@alt"]:
                if t not in targets:
                    continue
                p = start(t)
                try:
                    r = measure(p, url + paths[t], max(3, args.seconds // 2), args.rss_conns, headers.get(t, []),
                                strict=False)
                    r["rss_mib"] = rss_kib(p.pids(), "VmRSS") / 1024
                finally:
                    p.stop()
                extra[f"rss_{t}"] = r
                errs = f"  socket errors: {r['errors']}" if r["errors"] else ""
                print(f"{args.rss_conns} conns {t:10s} {r['rps']:9.0f} req/s  peak RSS {r['hwm_mib']:.1f} MiB{errs}",
                      flush=True)

        if args.fixed_rate and shutil.which("oha") and "nginx" in results:
            rate = int(statistics.median(r["rps"] for r in results["nginx"]) * 0.5)
            for t in ["nginx", "routing", "policies"]:
                if t not in targets:
                    continue
                p = start(t)
                try:
                    cmd = ["taskset", "-c", "0", "oha", "--no-tui", "--output-format", "json", "-z", f"{args.seconds}s",
                           "-c", str(args.conns), "-q", str(rate), "--latency-correction", url + paths[t]]
                    for h in headers.get(t, []):
                        cmd += ["-H", h]
                    out = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
                    p99 = out["latencyPercentiles"]["p99"] * 1000
                    extra[f"fixed_{t}"] = {"rate": rate, "p99_ms": p99,
                                           "success": out["summary"]["successRate"]}
                    print(f"fixed {rate} req/s {t:10s} p99 {p99:.2f} ms", flush=True)
                finally:
                    p.stop()

        # Report: ratios against the same round's nginx.
        print()
        print(f"{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.conns} on CPU 0; proxy + upstream on CPU 1. {args.label}")
        print()
        print("| target | req/s | CPU us/req | p50 ms | p99 ms | peak RSS MiB | req/s vs nginx | CPU/req vs nginx |")
        print("|---|---|---|---|---|---|---|---|")
        for t in targets:
            rs = results[t]
            row = [t, fmt([r["rps"] for r in rs], 0), fmt([r["cpu_us"] for r in rs], 1),
                   fmt([r["p50"] for r in rs]), fmt([r["p99"] for r in rs]), f"{max(r['hwm_mib'] for r in rs):.1f}"]
            if "nginx" in results and t != "nginx":
                n = results["nginx"]
                row.append(fmt([a["rps"] / b["rps"] for a, b in zip(rs, n)]))
                row.append(fmt([a["cpu_us"] / b["cpu_us"] for a, b in zip(rs, n)]))
            else:
                row += ["1.00", "1.00"]
            print("| " + " | ".join(row) + " |")
        if "routing" in results and "routes10k" in results:
            loss = [1 - a["rps"] / b["rps"] for a, b in zip(results["routes10k"], results["routing"])]
            print(f"\n10,000 routes vs 3 routes, throughput loss: {fmt([x * 100 for x in loss], 1)} %")
        for k, v in extra.items():
            print(f"{k}: {json.dumps(v)}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": results, "extra": extra, "args": vars(args)}, f, indent=1)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
