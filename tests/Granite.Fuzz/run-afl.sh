#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with AFL++ and SharpFuzz (see docs/reliability.md).
# usage: tests/Granite.Fuzz/run-afl.sh TARGET SECONDS [OUT_DIR] [IN_DIR]   (IN_DIR defaults to corpus/TARGET)
# needs: apt-get install afl++ ; dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0
set -euo pipefail
target=$1; seconds=$2; out=${3:-/tmp/granite-fuzz-out}
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/bin/Debug/net10.0/linux-x64
inst=${GRANITE_FUZZ_INST:-/tmp/granite-fuzz-instrumented}
export PATH="$PATH:$HOME/.dotnet/tools"
if [ ! -f "$inst/.done" ]; then
  dotnet build "$here" -v q
  rm -rf "$inst" && cp -al "$bin" "$inst"
  for d in Granite.Core.dll Granite.Extensions.AI.dll Granite.Fuzz.dll; do cp --remove-destination "$bin/$d" "$inst/$d"; done
  sharpfuzz "$inst/Granite.Core.dll"
  sharpfuzz "$inst/Granite.Extensions.AI.dll"
  touch "$inst/.done"
fi
export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
mkdir -p "$out"
# -t: per-input timeout in ms (a hang is an input slower than this); nice: leave the cores to builds and tests.
exec timeout "$seconds" nice -n 19 afl-fuzz -i "${4:-$here/corpus/$target}" -o "$out/$target" -t 5000 -m none -x "$here/json.dict" -- dotnet "$inst/Granite.Fuzz.dll" "$target"
