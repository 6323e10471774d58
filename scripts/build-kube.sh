#!/usr/bin/env bash
# Builds real Kubernetes control-plane binaries (kube-apiserver by default)
# of one version from the k8s.io/kubernetes Go module, for the tests of the
# cluster-side steps (CSR approval, nodes, signer cleanup).
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and replaces them with ./staging paths
# that do not exist in the module download. So it is built as a dependency of
# a throwaway consumer module that replaces each of those at v0.0.0 with its
# published v0.<minor>.<patch> version, CGO_ENABLED=0.
#
# The binaries are cached outside the repository, keyed by version:
#   ${ETCD_RESCUE_CACHE:-$HOME/.cache/etcd-rescue}/kube/<version>/<binary>
# A second run for the same version builds nothing. A cold build of
# kube-apiserver takes about 17 minutes on 2 cores; run it with nice.
#
# Usage: scripts/build-kube.sh [VERSION [BINARY...]]
#        (VERSION like v1.37.2, BINARY in kube-apiserver kube-controller-manager)
set -euo pipefail
version="${1:-v1.37.2}"
shift || true
binaries=("$@")
[ "${#binaries[@]}" -gt 0 ] || binaries=(kube-apiserver)
case "$version" in
v1.*.*) ;;
*) echo "build-kube.sh: version must look like v1.37.2, got $version" >&2; exit 2 ;;
esac
cache="${ETCD_RESCUE_CACHE:-$HOME/.cache/etcd-rescue}"
out="$cache/kube/$version"

missing=()
for b in "${binaries[@]}"; do
	case "$b" in
	kube-apiserver | kube-controller-manager | kube-scheduler) ;;
	*) echo "build-kube.sh: unknown binary $b (kube-apiserver, kube-controller-manager, kube-scheduler)" >&2; exit 2 ;;
	esac
	[ -x "$out/$b" ] || missing+=("$b")
done
if [ "${#missing[@]}" -eq 0 ]; then
	for b in "${binaries[@]}"; do echo "$out/$b"; done
	exit 0
fi

# The published staging modules carry the same minor and patch as v0.x.y.
staging="v0.${version#v1.}"
src="$cache/kube/src-$version"
rm -rf "$src"
mkdir -p "$src" "$out"
cd "$src"
go mod init kube-build >/dev/null 2>&1

# The staging module list comes from k8s.io/kubernetes' own go.mod.
gomod="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[ -f "$gomod" ] || { echo "build-kube.sh: cannot download the go.mod of k8s.io/kubernetes@$version" >&2; exit 1; }
mods="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$gomod" | sort -u)"
[ -n "$mods" ] || { echo "build-kube.sh: no staging replacements found in $gomod" >&2; exit 1; }
{
	echo "require k8s.io/kubernetes $version"
	for m in $mods; do echo "replace $m v0.0.0 => $m $staging"; done
} >>go.mod

pkgs=()
for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
cat >tools.go <<GO
//go:build tools

// Package tools pins the control-plane commands this module builds.
package tools

import (
$(for p in "${pkgs[@]}"; do echo "	_ \"$p\""; done)
)
GO
go mod tidy -e >/dev/null 2>&1 || true
go mod download >/dev/null

minor="${version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w -buildid="
for v in gitVersion=$version gitMajor=1 gitMinor=$minor gitTreeState=clean; do
	ldflags="$ldflags -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
done
for b in "${missing[@]}"; do
	start=$(date +%s)
	CGO_ENABLED=0 go build -trimpath -tags tools -ldflags "$ldflags" -o "$out/$b.part" "k8s.io/kubernetes/cmd/$b"
	mv "$out/$b.part" "$out/$b"
	echo "build-kube.sh: built $b $version in $(($(date +%s) - start))s" >&2
done
cd /
rm -rf "$src"
for b in "${binaries[@]}"; do echo "$out/$b"; done
