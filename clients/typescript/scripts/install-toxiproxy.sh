#!/usr/bin/env bash
# Installs the pinned toxiproxy server (a Go module) into clients/typescript/.tools/ with
# `go install`, unless it is there already. Prints the binary's path. Needs Go (make deps).
#
# v2.5.0 is the newest release the Go module proxy serves for github.com/Shopify/toxiproxy/v2
# (`go list -m -versions` lists v2.3.0 and v2.5.0).
set -euo pipefail
VERSION=v2.5.0
here=$(cd "$(dirname "$0")/.." && pwd)
dir="$here/.tools/toxiproxy-$VERSION"
bin="$dir/toxiproxy-server"
if [[ ! -x $bin ]]; then
  # The Go toolchain of these machines lives in /usr/local/go (not always on a root PATH).
  command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "install-toxiproxy: go is not installed" >&2; exit 1; }
  mkdir -p "$dir"
  # `go install` names the binary after the package directory (cmd/server -> server).
  GOBIN="$dir" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" >&2
  mv "$dir/server" "$bin"
fi
echo "$bin"
