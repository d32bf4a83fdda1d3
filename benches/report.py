#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md from one run's JSON lines.

    python3 benches/report.py RNN.jsonl [--torch T.jsonl] [--burn B.jsonl] [--label NAME]

RNN.jsonl is `rnn-wgpu bench --json [--phases]`; T.jsonl and B.jsonl are the peers' output
(../shared/peers, or benches/peers/torch_cuda.py) from the same machine and session. Every ratio
printed is between numbers in these files, so only pass files measured together.

`bench --vs-rounded --json` lines make the odd-size table instead; `bench --task ... --json`
lines make the real-task table, with benches/peers/torch_tasks.py's lines as --torch.
"""
import json
import sys


def load(path):
    rows = []
    if path:
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def rounded_table(rows):
    print("| shape (T,B,I,H,O) | rounded up to 8 | driver | ms | rounded ms | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        flag = " **" if r["ratio"] > 1.3 else ""
        print(f"| {r['shape']} | {r['rounded']} | {r['driver']} | {r['ms']:.2f} | "
              f"{r['rounded_ms']:.2f} | {r['ratio']:.2f}x{flag} |")
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"\nWorst: {worst['shape']} ({worst['driver']}) at {worst['ratio']:.2f}x; "
          f"{sum(r['ratio'] > 1.3 for r in rows)} of {len(rows)} above 1.3x.")


def task_table(rows, peers, label):
    print(f"| task | T,B,I,H,O | form | ms | samples/s | vs first form | vs {label} {{forms}} |".replace(
        "{forms}", " / ".join(p["form"] for p in peers) or "–"))
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        shape = ",".join(str(r[k]) for k in "TBIHO")
        base = r.get("speedup_vs_baseline")
        vs = " / ".join(f"{p['ms'] / r['ms']:.2f}x" for p in peers if p["task"] == r["task"]) or "–"
        print(f"| {r['task']} | {shape} | {r['form']} | {r['ms']:.2f} | {r['samples_per_s']:,.0f} | "
              f"{f'{base:.2f}x' if base else '1.00x'} | {vs} |")
    for p in peers:
        shape = ",".join(str(p[k]) for k in "TBIHO")
        print(f"| {p['task']} | {shape} | *{label} {p['form']}* | {p['ms']:.2f} | {p['samples_per_s']:,.0f} | | |")


def main(argv):
    args = {"rnn": argv[0]}
    for flag, value in zip(argv[1::2], argv[2::2]):
        args[flag.lstrip("-")] = value
    rnn = load(args["rnn"])
    if rnn and "rounded" in rnn[0]:
        return rounded_table(rnn)
    if rnn and "task" in rnn[0]:
        return task_table(rnn, load(args.get("torch")), args.get("label", "PyTorch CPU"))
    # Rows are keyed by shape, layer count and directions (missing: one layer, one direction),
    # so stacked and bidirectional runs of the peers (torch_rnn.py --layers L
    # --bidirectional, concatenated) meet ours.
    key = lambda r: (r["shape"], r.get("layers", 1), bool(r.get("bidirectional", False)))
    torch = {(key(r), r["mode"]): r for r in load(args.get("torch"))}
    burn = {(key(r), r["mode"]): r for r in load(args.get("burn"))}
    label = args.get("label", "peer")
    shapes = []
    for r in rnn:
        if key(r) not in shapes:
            shapes.append(key(r))
    name = lambda k: k[0] + ("" if k[1] == 1 else f", L = {k[1]}") + (", bidirectional" if k[2] else "")
    print(f"| shape | mode | driver | ms | samples/s | vs naive | vs Burn | vs {label} |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for s in shapes:
        for mode in ("forward", "train_step"):
            for r in (r for r in rnn if key(r) == s and r["mode"] == mode):
                base = r.get("speedup_vs_baseline")
                b = burn.get((s, mode))
                t = torch.get((s, mode))
                vs_b = f"{b['ms'] / r['ms']:.1f}x" if b else "–"
                vs_t = f"{t['ms'] / r['ms']:.2f}x" if t else "–"
                print(f"| {name(s)} | {mode} | {r['driver']} | {r['ms']:.3f} | {r['samples_per_s']:,.0f} | "
                      f"{(f'{base:.2f}x' if base else '1.00x' if r['driver'] == 'naive' else '–')} | "
                      f"{vs_b} | {vs_t} |")
            for peer, table in (("Burn", burn), (label, torch)):
                p = table.get((s, mode))
                if p:
                    print(f"| {name(s)} | {mode} | *{peer}* | {p['ms']:.3f} | {p['samples_per_s']:,.0f} | | | |")
    phased = [r for r in rnn if r.get("phases_ms")]
    if phased:
        names = []
        for r in phased:
            for n in r["phases_ms"]:
                if n not in names:
                    names.append(n)
        print()
        print("GPU milliseconds per phase (timestamp queries, medians of 3):")
        print()
        print("| shape | mode | driver | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---:|" * len(names))
        for r in phased:
            cells = [f"{r['phases_ms'][n]:.3f}" if n in r["phases_ms"] else "" for n in names]
            print(f"| {name(key(r))} | {r['mode']} | {r['driver']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1:])
