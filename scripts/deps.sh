#!/usr/bin/env bash
# Installs what building and testing gatehouse needs on Debian/Ubuntu, if missing:
# cmake (pingora-core builds zlib-ng with it), a C toolchain, redis-server
# (the Redis rate-limit tests start a real one), dnsmasq (the DNS discovery
# tests run a real DNS server), etcd-server and protoc (cluster mode), curl, and for the benchmark smoke nginx,
# haproxy, wrk and valgrind, and for the console test chromium.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
# Cluster mode: the tests start a real etcd; etcd-client's build compiles
# etcd's .proto files with protoc.
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v protoc >/dev/null || need+=(protobuf-compiler)
# The benchmark smoke (scripts/bench-smoke.sh): the load bench's peers and
# its instruction counter.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
# The console test drives a real headless browser.
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
