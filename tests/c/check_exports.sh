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
# The finding and query entry points must be exported, not just compiled.
for sym in sluice_list_jobs sluice_count_jobs sluice_verify_indexes sluice_query \
  sluice_query_result_free sluice_query_result_column_count sluice_query_result_column_name \
  sluice_query_result_row_count sluice_query_result_keys_visited sluice_query_result_type \
  sluice_query_result_int64 sluice_query_result_double sluice_query_result_bytes \
  sluice_cancel_token_create sluice_cancel_token_cancel sluice_cancel_token_is_cancelled \
  sluice_cancel_token_destroy; do
  if ! printf '%s\n' "$all" | grep -qx "$sym"; then echo "libsluice does not export $sym"; exit 1; fi
done
echo "libsluice exports $count symbols, all sluice_*"
