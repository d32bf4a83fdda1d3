"""PyTorch CPU peer for `rnn-wgpu bench --task`: the same real tasks' training steps.

char-lm: a character language model on a text (its own vocabulary V, T characters by B
streams, H hidden units), next-character cross-entropy at every step, clip_grad_norm_(5),
Adam(2e-3), the hidden state carried from window to window; timed in two forms:
  one-hot:   nn.RNN(V, H) + nn.Linear(H, V) on one-hot inputs (what rnn-wgpu's model computes)
  embedding: nn.Embedding(V, H) + nn.RNN(H, H) + nn.Linear(H, V) on the ids (the usual way
             to write it in PyTorch; one more H x H product per step than the first)
seq-class: one class per sequence of random inputs [T, B, I], nn.RNN(I, H) + nn.Linear(H, O)
on the last step's output only, cross-entropy, clip_grad_norm_(5), Adam(2e-3).

Each step times the batch's creation, the step, and the update; medians after one warm-up
(at least 5 runs and 1 s, at most 50). One JSON line per form.
Usage: python3 torch_tasks.py char-lm --text FILE [--seq-len 64] [--batch 32] [--hidden 128]
       python3 torch_tasks.py seq-class [--seq-len 256] [--batch 32] [--input 32]
                                        [--hidden 128] [--classes 10]
"""
import argparse, json, statistics, time
import torch


def bench(step, min_runs=5, min_seconds=1.0, max_runs=50):
    k = 0
    step(k); k += 1  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_seconds and len(times) < max_runs):
        t = time.perf_counter(); step(k); k += 1; times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def report(task, form, shape, ms, runs, loss):
    T, B, I, H, O = shape
    print(json.dumps({"peer": "pytorch-cpu", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "task": task, "form": form,
                      "T": T, "B": B, "I": I, "H": H, "O": O, "mode": "train_step",
                      "ms": round(ms, 3), "runs": runs,
                      "samples_per_s": round(T * B / (ms / 1e3)), "loss": loss}), flush=True)


def char_lm(a):
    text = open(a.text, encoding="utf-8").read()
    vocab = sorted(set(text))
    V, T, B, H = len(vocab), a.seq_len, a.batch, a.hidden
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = len(ids) // B
    streams = ids[: n * B].view(B, n).t().contiguous()  # [n, B], stream b in column b
    windows = (n - 1) // T
    eye = torch.eye(V)
    for form in ("one-hot", "embedding"):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(V, H) if form == "embedding" else None
        rnn = torch.nn.RNN(H if emb else V, H)
        fc = torch.nn.Linear(H, V)
        params = list(rnn.parameters()) + list(fc.parameters()) + (list(emb.parameters()) if emb else [])
        opt = torch.optim.Adam(params, lr=2e-3)
        state = {"h": torch.zeros(1, B, H), "loss": 0.0}

        def step(k):
            s = (k % windows) * T
            x_ids, y = streams[s:s + T], streams[s + 1:s + T + 1]
            x = emb(x_ids) if emb else eye[x_ids]
            out, h = rnn(x, state["h"])
            loss = torch.nn.functional.cross_entropy(fc(out).reshape(T * B, V), y.reshape(T * B))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            state["h"] = h.detach()
            state["loss"] = loss.item()

        s, runs = bench(step)
        report("char-lm", form, (T, B, V, H, V), s * 1e3, runs, state["loss"])


def seq_class(a):
    T, B, I, H, O = a.seq_len, a.batch, a.input, a.hidden, a.classes
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    y = torch.randint(0, O, (B,))
    rnn, fc = torch.nn.RNN(I, H), torch.nn.Linear(H, O)
    params = list(rnn.parameters()) + list(fc.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    state = {"loss": 0.0}

    def step(k):
        out, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(fc(out[-1]), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state["loss"] = loss.item()

    s, runs = bench(step)
    report("seq-class", "last-step", (T, B, I, H, O), s * 1e3, runs, state["loss"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=["char-lm", "seq-class"])
    p.add_argument("--text")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()
    if a.task == "char-lm":
        if not a.text:
            p.error("char-lm needs --text FILE")
        a.seq_len = a.seq_len or 64
        char_lm(a)
    else:
        a.seq_len = a.seq_len or 256
        seq_class(a)


if __name__ == "__main__":
    main()
