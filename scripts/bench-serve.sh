#!/usr/bin/env bash
# Throughput of `tova serve` with N concurrent non-streaming requests of a fixed length (ignore_eos), on loopback.
# Usage: scripts/bench-serve.sh [PORT] [TOKENS] [CONCURRENCY...]   (start the server first, e.g.
#   dotnet run --project src/Tova.Cli -c Release -- serve --port 8080 --cache tova --budget 64 --max-tokens 4096)
set -euo pipefail
port=${1:-8080}; tokens=${2:-1000}; shift $(( $# > 2 ? 2 : $# )) || true
levels=("$@"); [ ${#levels[@]} -eq 0 ] && levels=(1 4 16)
body="{\"prompt\":\"Once upon a time\",\"max_tokens\":$tokens,\"ignore_eos\":true,\"temperature\":0}"
curl -s -m 60 "http://127.0.0.1:$port/v1/completions" -d "{\"prompt\":\"warm up\",\"max_tokens\":50}" > /dev/null
for n in "${levels[@]}"; do
  start=$(date +%s.%N)
  for _ in $(seq "$n"); do curl -s -m 600 "http://127.0.0.1:$port/v1/completions" -d "$body" > /dev/null & done
  wait
  end=$(date +%s.%N)
  awk -v n="$n" -v t="$tokens" -v s="$start" -v e="$end" 'BEGIN { w = e - s; printf "%2d concurrent × %d tokens: %.2f s, %.0f tokens/s in all, %.0f tokens/s per stream\n", n, t, w, n * t / w, t / w }'
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^tova_(batch_size_max|decode_steps_total|step_sequences_total) '
