#!/usr/bin/env bash
# scripts/deps.sh [build|test] — install what rumor needs from Debian 12.
# build: compilers and libraries. test: also the real peers the tests run
# (curl, dig, python3-consul, serf, unbound, promtool, chromium for the web
# UI test, driven over its DevTools pipe, Patroni and PostgreSQL for
# tests/evidence/patroni.sh) and the tools for network namespaces.
set -euo pipefail
mode=${1:-build}
pkgs=(build-essential cmake pkg-config libev-dev libmsgpack-dev libsodium-dev
      libjansson-dev liblmdb-dev libhttp-parser-dev libraft-dev)
if [ "$mode" = test ]; then
	pkgs+=(curl dnsutils python3 python3-consul python3-pytest python3-cryptography serf clang-format iproute2 nftables
	       procps psmisc util-linux valgrind clang libclang-rt-14-dev unbound prometheus
	       chromium patroni postgresql-15)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
