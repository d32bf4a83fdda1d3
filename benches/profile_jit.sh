#!/bin/bash
# Where a CPU adapter's (lavapipe's) JIT-compiled kernels spend their time, by instruction:
# samples a running benchmark with `perf record -e cpu-clock` (no hardware counters needed),
# reads the JIT's code pages from /proc/PID/mem while it still runs, disassembles them and
# counts the samples per mnemonic. A developer's tool (needs `perf`, `objdump`, python3 and
# the right to read the benchmark's memory, root or ptrace_scope 0); CI does not run it.
#
#   benches/profile_jit.sh [BINARY] [bench arguments...]
#   benches/profile_jit.sh target/release/rnn-wgpu --shape 64,32,88,128,88 --mode train_step
#
# Output: the commonest mnemonics under the samples, and in $OUT (default /tmp/profile_jit)
# the disassembly `d_<address>.txt` of each code region and `samples.txt` (one sampled
# address per line), to read a hot loop with its neighbours. A storage access's per-lane loop
# shows as `jmp`/`jb`/`cmp`/`inc` around `vmovdqa` to and from the stack; uniform gathers as
# `vpextrd`/`vpinsrd` (ARCHITECTURE.md, "lavapipe's costs").
set -euo pipefail
BIN=${1:-target/release/rnn-wgpu}
shift || true
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
    ARGS=(--shape 64,32,88,128,88 --driver persistent --mode train_step)
fi
OUT=${OUT:-/tmp/profile_jit}
SECS=${SECS:-6}
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN" bench "${ARGS[@]}" --min-runs 100000 --min-seconds 3600 >"$OUT/bench.out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 5 # adapter, pipelines and warm-up
perf record -e cpu-clock -F 2000 -p "$PID" -o "$OUT/perf.data" -- sleep "$SECS" >/dev/null 2>&1
python3 - "$PID" "$OUT" <<'PY'
import sys
pid, out = sys.argv[1], sys.argv[2]
mem = open(f"/proc/{pid}/mem", "rb")
for line in open(f"/proc/{pid}/maps"):
    f = line.split()
    # Anonymous executable mappings: the JIT's code.
    if "x" in f[1] and len(f) < 6:
        a, b = (int(x, 16) for x in f[0].split("-"))
        mem.seek(a)
        open(f"{out}/jit_{a:x}.bin", "wb").write(mem.read(b - a))
PY
kill "$PID" 2>/dev/null || true
for f in "$OUT"/jit_*.bin; do
    a=${f##*/jit_}
    a=${a%.bin}
    objdump -D -b binary -mi386:x86-64 --adjust-vma=0x"$a" "$f" >"$OUT/d_$a.txt"
done
perf script -i "$OUT/perf.data" -F ip 2>/dev/null >"$OUT/samples.txt"
python3 - "$OUT" <<'PY'
import collections, glob, re, sys
out = sys.argv[1]
mnemonic = {}
for f in glob.glob(f"{out}/d_*.txt"):
    for line in open(f):
        m = re.match(r"\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(\S+)", line)
        if m:
            mnemonic[int(m.group(1), 16)] = m.group(3)
counts = collections.Counter()
total = 0
for line in open(f"{out}/samples.txt"):
    total += 1
    counts[mnemonic.get(int(line.split()[0], 16), "(outside the JIT)")] += 1
print(f"{total} samples")
for name, n in counts.most_common(20):
    print(f"{name:18s} {n:7d} {100 * n / max(total, 1):5.1f}%")
PY
