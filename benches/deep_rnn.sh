#!/usr/bin/env bash
# Issue #14's evidence: what depth buys (Pascanu, Gulcehre, Cho & Bengio 2014). Plain, stacked
# (a), deep transition (DT), deep transition with shortcut (DT(S)), deep output (DO) and deep
# transition + deep output with shortcut (DOT(S)), each at about the same parameter count (H
# chosen per configuration; the model line of each run prints its count), the same number of
# steps and three seeds, on a character language model over a text (bits per character on the
# held-out tenth) and on the adding problem (held-out mse at the last step). One CSV line per
# run on stdout and in OUT/runs.csv.
#
#   benches/deep_rnn.sh TEXT [OUT] [STEPS]   (default: deep-rnn-runs, 800 steps)
#
# TEXT: any text file (the runs recorded in BENCHMARKS.md used the first 100000 bytes of
# Debian's license texts: head -c 100000 <(cat /usr/share/common-licenses/*)). Set TASKS
# ("text adding"), CONFIGS or SEEDS (space-separated) to run a part.
set -euo pipefail
text=${1:?give a text file}
out=${2:-deep-rnn-runs}
steps=${3:-800}
bin=${RNN_WGPU:-target/release/rnn-wgpu}
[ -x "$bin" ] || cargo build --release --quiet
mkdir -p "$out"
tasks=${TASKS:-"text adding"}
configs=${CONFIGS:-"plain stacked dt dts do dots"}
seeds=${SEEDS:-"0 1 2"}
echo "task,config,params,seed,result,unit,seconds,status" | tee "$out/runs.csv"
for task in $tasks; do
  for config in $configs; do
    # H per configuration for about 38 000 parameters (text, vocabulary 82) or 4 400 (adding).
    case $task:$config in
      text:plain) m=(--hidden 128) ;;
      text:stacked) m=(--hidden 87 --layers 2) ;;
      text:dt) m=(--hidden 102 --transition-depth 1) ;;
      text:dts) m=(--hidden 88 --transition-depth 1 --skip) ;;
      text:do) m=(--hidden 102 --output-depth 1) ;;
      text:dots) m=(--hidden 78 --transition-depth 1 --skip --output-depth 1) ;;
      adding:plain) m=(--hidden 64) ;;
      adding:stacked) m=(--hidden 37 --layers 2) ;;
      adding:dt) m=(--hidden 45 --transition-depth 1) ;;
      adding:dts) m=(--hidden 37 --transition-depth 1 --skip) ;;
      adding:do) m=(--hidden 45 --output-depth 1) ;;
      adding:dots) m=(--hidden 32 --transition-depth 1 --skip --output-depth 1) ;;
    esac
    case $task in
      text) t=(--text "$text" --seq-len 32 --lr 0.003 --clip 5) ;;
      adding) t=(--task adding --seq-len 50 --lr 0.001 --clip 1) ;;
    esac
    for seed in $seeds; do
      start=$(date +%s.%N)
      log=$("$bin" train "${t[@]}" "${m[@]}" --seed "$seed" --steps "$steps" --batch 32 \
        --log-every "$steps" 2>&1) && status=ok || status=failed
      secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
      params=$(echo "$log" | sed -n 's/.* \([0-9]*\) parameters.*/\1/p' | head -1)
      case $task in
        text) result=$(echo "$log" | sed -n 's/.*(\([0-9.]*\) bits\/char).*/\1/p' | tail -1); unit=bits/char ;;
        adding) result=$(echo "$log" | sed -n 's/.*held-out mse at the last step \([0-9.e+-]*\) vs.*/\1/p' | tail -1); unit=mse ;;
      esac
      printf '%s,%s,%s,%s,%s,%s,%.1f,%s\n' "$task" "$config" "$params" "$seed" "${result:-}" \
        "$unit" "$secs" "$status" | tee -a "$out/runs.csv"
    done
  done
done
