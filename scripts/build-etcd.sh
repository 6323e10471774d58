#!/usr/bin/env bash
# Builds a real etcd server of a given version from its Go module (through
# the Go module proxy) into .cache/etcd/<version>/etcd, for the
# compatibility tests. etcd's own go.mod uses replace directives, so it is
# built as a dependency of a throwaway module whose main calls etcdmain.Main.
# Cached: a second run for the same version builds nothing.
#
# Usage: scripts/build-etcd.sh VERSION [CACHE_DIR]   (VERSION like 3.5.35)
set -euo pipefail
version="${1:?usage: build-etcd.sh VERSION [CACHE_DIR]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${2:-${CACHE:-$root/.cache}}"
out="$cache/etcd/$version"
if [ -x "$out/etcd" ]; then
	echo "$out/etcd"
	exit 0
fi
src="$cache/etcd/src-$version"
rm -rf "$src"
mkdir -p "$src" "$out"
cat >"$src/main.go" <<'GO'
// Command etcd is etcd's own server, built at a pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
(
	cd "$src"
	go mod init etcd-build >/dev/null 2>&1
	go get "go.etcd.io/etcd/server/v3@v$version" >/dev/null 2>&1
	go mod tidy >/dev/null 2>&1
	CGO_ENABLED=0 go build -trimpath -o "$out/etcd.part" .
)
mv "$out/etcd.part" "$out/etcd"
rm -rf "$src"
echo "$out/etcd"
