"""The peers gatehouse is measured against, configured like run.py's targets.

Each policies target does the same work on every request: an HS256 JWT
verified with an algorithm allow-list and a required, live `exp`; a per-`sub`
rate limit that never triggers (or `limit` per minute, for check.py); `sub`
forwarded as `X-User-Id` with client copies removed; Prometheus metrics on
the admin port; one JSON access-log line per request in `access.log`.

- HAProxy (apt, 2.6): `jwt_verify` and friends, a stick table keyed by
  `sub`, the built-in Prometheus exporter, a JSON log-format. HAProxy logs
  to a syslog target or stdout, not to a file: stdout goes to `access.log`.
"""

import os
import sys
import subprocess

from run import PROXY_PORT, ADMIN_PORT, ROUTES, SECRET

def haproxy_conf(work, policies, limit=100_000_000):
    """HAProxy 2.6, one thread, the same three routes."""
    g = [
        "global",
        "    nbthread 1",
        "    maxconn 4000",
        f"    pidfile {work}/haproxy.pid",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-keep-alive 60s",
        "    option http-keep-alive",
        "    http-reuse always",
    ]
    if policies:
        g += [
            "    log stdout format raw local0",
            '    log-format \'{"time":"%t","client":"%ci","method":"%HM","path":"%HPO","status":%ST,'
            '"bytes":%B,"duration_ms":%Ta,"backend":"%b","user":"%[var(txn.sub)]"}\'',
        ]
    fe = ["frontend proxy", f"    bind 127.0.0.1:{PROXY_PORT}", "    option forwardfor"]
    if policies:
        fe += [
            "    log global",
            "    http-request del-header X-User-Id",
            # The algorithm allow-list, then the signature, then exp.
            "    http-request set-var(txn.alg) http_auth_bearer,jwt_header_query('$.alg')",
            "    http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }",
            f"    http-request deny deny_status 401 unless {{ http_auth_bearer,jwt_verify(txn.alg,\"{SECRET}\") -m int 1 }}",
            "    http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('$.exp','int')",
            "    http-request deny deny_status 401 unless { var(txn.exp) -m found }",
            "    http-request set-var(txn.now) date",
            "    http-request set-var(txn.left) var(txn.exp),sub(txn.now)",
            "    http-request deny deny_status 401 if { var(txn.left) -m int lt 0 }",
            "    http-request set-var(txn.sub) http_auth_bearer,jwt_payload_query('$.sub')",
            "    http-request deny deny_status 401 unless { var(txn.sub) -m found }",
            "    http-request track-sc0 var(txn.sub) table per_sub",
            f"    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {limit} }}",
            "    http-request set-header X-User-Id %[var(txn.sub)]",
        ]
    for name, prefix, _ in ROUTES:
        fe.append(f"    use_backend {name} if {{ path_beg {prefix}/ }}")
    be = []
    for name, _, port in ROUTES:
        be += [f"backend {name}", f"    server s1 127.0.0.1:{port}"]
    extra = []
    if policies:
        extra = [
            "backend per_sub",
            "    stick-table type string len 64 size 100k expire 60s store http_req_rate(60s)",
            "frontend admin",
            f"    bind 127.0.0.1:{ADMIN_PORT}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
        ]
    path = os.path.join(work, f"haproxy-{'policies' if policies else 'plain'}.cfg")
    with open(path, "w") as f:
        f.write("\n".join(g + fe + be + extra) + "\n")
    return path


def haproxy_cmd(work, policies, limit=100_000_000):
    conf = haproxy_conf(work, policies, limit)
    # -db: foreground; stdout (the JSON log) to access.log.
    return ["sh", "-c", f"exec haproxy -db -f {conf} > {work}/access.log"]


# Pingap 0.13.1 (Pingora 0.8), built by `build_pingap` below (`run.py
# --build-pingap`; about 20 minutes of both cores, needs protobuf-compiler)
# into ~/.cache/gatehouse-bench/pingap; `PINGAP_ROOT` moves it.
PINGAP_ROOT = os.path.expanduser(os.environ.get("PINGAP_ROOT", "~/.cache/gatehouse-bench/pingap"))
PINGAP = os.path.join(PINGAP_ROOT, "bin", "pingap")


def pingap_conf(work, policies, limit=100_000_000):
    """Pingap, one thread without work stealing, the same three routes.

    Policies: its `jwt` plugin (HS256 secret, bearer token in
    `Authorization`; no token and a tampered one get 401) and its `limit`
    plugin (`rate`, `max` per 60 s). What it does not do like the others:
    the limit keys on a header value (the whole `Authorization` header: per
    token, not per `sub`) and, being Pingora's `Rate`, refuses only from the
    second window on (a 3/min limit lets the 4th request of the first minute
    through); no claim is forwarded (no `X-User-Id`); its jwt plugin accepts
    HS512 and tokens without `exp` (issue 17's table); its Prometheus
    exporter needs a build feature this build leaves out."""
    lines = ["[basic]", "threads = 1", "work_stealing = false", 'log_level = "error"',
             f'pid_file = "{work}/pingap.pid"', f'upgrade_sock = "{work}/pingap.sock"']
    for name, prefix, port in ROUTES:
        lines += [f"[upstreams.{name}]", f'addrs = ["127.0.0.1:{port}"]',
                  f"[locations.{name}]", f'upstream = "{name}"', f'path = "{prefix}/"']
        if policies:
            lines.append('plugins = ["jwt", "limit"]')
    lines += ["[servers.proxy]", f'addr = "127.0.0.1:{PROXY_PORT}"',
              "locations = [" + ", ".join(f'"{n}"' for n, _, _ in ROUTES) + "]"]
    if policies:
        lines += ["[plugins.jwt]", 'category = "jwt"', f'secret = "{SECRET}"',
                  'header = "Authorization"', 'algorithm = "HS256"',
                  "[plugins.limit]", 'category = "limit"', 'tag = "header"', 'key = "Authorization"',
                  'type = "rate"', f"max = {limit}", 'interval = "60s"']
    path = os.path.join(work, f"pingap-{'policies' if policies else 'plain'}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def build_pingap():
    """`run.py --build-pingap`: cargo install into PINGAP_ROOT (cargo skips
    it when that version is already installed there)."""
    cmd = ["cargo", "install", "pingap@0.13.1", "--locked", "--features", "tracing", "--root", PINGAP_ROOT]
    print("building Pingap (about 20 minutes):", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def pingap_cmd(work, policies, limit=100_000_000):
    if not os.path.exists(PINGAP):
        raise SystemExit(f"no Pingap at {PINGAP}: run.py --build-pingap builds it (see peers.py)")
    return [PINGAP, "-c", pingap_conf(work, policies, limit)]
