#!/usr/bin/env bash
# Cost of the stateless contract: `granite chat --script` replays the same user turns through GraniteChatClient with
# the history resent every turn (default, stateless) and with a stored conversation (--store-conversations: only the
# new message + ConversationId), in interleaved rounds. Prints one JSON line per turn, prefixed with round and mode.
#   MODEL=DIR (default: the tiny-h-moe fixture), TURNS=N, WORDS=N (per turn), ROUNDS=N, MAXTOK=N
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${MODEL:-$root/tests/TestData/tiny-h-moe}
work=${WORK:-/tmp/granite-resend}
turns=${TURNS:-8}; words=${WORDS:-60}; rounds=${ROUNDS:-3}; maxtok=${MAXTOK:-8}
mkdir -p "$work"
python3 - "$work/turns.json" "$turns" "$words" <<'PY'
import json, random, sys
random.seed(5)
w = ("the of and to in is that for it as with was on be by this are or from at which but have an not they all one has "
     "were their there been more would its who when will about into than them can only other new some could these two").split()
n, k = int(sys.argv[2]), int(sys.argv[3])
json.dump([" ".join(random.choice(w) for _ in range(k)).capitalize() + ". What next?" for _ in range(n)], open(sys.argv[1], "w"))
PY
dotnet build -c Release "$root/src/Granite.Cli" > /dev/null
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) cpu: $(grep -o -E 'avx512[a-z_0-9]*|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for r in $(seq 1 "$rounds"); do
  for mode in resend stored; do
    flag=(); [ "$mode" = stored ] && flag=(--store-conversations)
    dotnet run -c Release --no-build --project "$root/src/Granite.Cli" -- chat --model "$model" --script "$work/turns.json" \
      --json --max-tokens "$maxtok" --system "You are a terse assistant." "${flag[@]}" | sed "s/^/$r $mode /"
  done
done
