#!/bin/sh
# Fails when libsluice exports any dynamic symbol that is not sluice_*.
set -eu
lib=$1
all=$(nm -D --defined-only "$lib" | awk '{print $3}')
bad=$(printf '%s\n' "$all" | grep -v '^sluice_' || true)
count=$(printf '%s\n' "$all" | grep -c '^sluice_' || true)
if [ -n "$bad" ]; then
  echo "libsluice exports non-sluice symbols:"; printf '%s\n' "$bad"; exit 1
fi
if [ "$count" -lt 20 ]; then echo "only $count sluice_* symbols exported"; exit 1; fi
echo "libsluice exports $count symbols, all sluice_*"
