#!/usr/bin/env bash
# End-to-end session reuse through GraniteChatClient: `granite chat --script` replays 10 long user turns (~1,300 tokens
# each) after a ~3,600-token system prompt, with and without reuse, on the 4-layer H-Tiny-shaped checkpoint written by
# the sessions benchmark (run it once first) plus the fixture tokenizer. Prints the per-turn JSON lines of both runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${WORK:-/tmp/granite-chat-e2e}
ckpt=${CKPT:-/tmp/granite-bench-sessions/h-tiny-4}
mkdir -p "$work/model"
ln -f "$ckpt/model.safetensors" "$work/model/model.safetensors" 2>/dev/null || cp "$ckpt/model.safetensors" "$work/model/"
cp "$ckpt/config.json" "$work/model/"
cp "$root/tests/TestData/tiny-h-moe/tokenizer.json" "$root/tests/TestData/tiny-h-moe/tokenizer_config.json" "$work/model/"
python3 - "$work" <<'PY'
import json, random, sys
random.seed(3)
words = ("the of and to in is that for it as with was on be by this are or from at which but have an not they all one has were their "
         "there been more would its who when will about into than them can only other new some could these two may first then do any "
         "like my now over such our man me even most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world still own see men work long get here "
         "between both life being under never day same another know while last might us great old year off come since against go came "
         "right used take three").split()
turns = [(" ".join(random.choice(words) for _ in range(420))).capitalize() + ". What should I do next?" for _ in range(10)]
json.dump(turns, open(sys.argv[1] + "/turns.json", "w"))
random.seed(9)
w = ("tool function returns weather city temperature units celsius fahrenheit search flights book hotel currency convert amount "
     "date time zone calendar event email send recipient subject body").split()
open(sys.argv[1] + "/system.txt", "w").write(" ".join(random.choice(w) for _ in range(600)))
PY
dotnet build -c Release "$root/src/Granite.Cli" > /dev/null
for mode in reuse no-reuse; do
  flag=(); [ "$mode" = no-reuse ] && flag=(--no-reuse)
  echo "== $mode"
  dotnet run -c Release --no-build --project "$root/src/Granite.Cli" -- chat --model "$work/model" --script "$work/turns.json" \
    --json --max-tokens 8 --system "$(cat "$work/system.txt")" "${flag[@]}"
done
