"""PyTorch CUDA peer: torch.nn.RNN (cuDNN) + Linear head on the GPU, same workload as
`rnn-wgpu bench` (DESIGN section 6 shapes and DeepBench's vanilla shapes), timed with CUDA
synchronisation, medians after warm-up. One JSON line per shape and mode.
Usage: python3 torch_cuda.py [shape ...]   (default: all)
"""
import json, statistics, sys, time
import torch

SHAPES = {  # name: T, B, I, H, O
    "small": (64, 16, 32, 64, 32),
    "medium": (100, 64, 64, 256, 64),
    "large": (100, 64, 256, 1024, 256),
    "long": (1000, 8, 32, 128, 32),
}
for h in (1760, 2048, 2560):
    for b in (16, 32, 64, 128):
        SHAPES[f"deepbench-h{h}-b{b}"] = (50, b, h, h, 1)


def bench(fn, min_runs=5, min_seconds=0.5):
    fn(); torch.cuda.synchronize()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); times.append(time.perf_counter() - t)
        if len(times) >= 50: break
    return statistics.median(times)


def main(names):
    torch.manual_seed(0)
    dev = "cuda"
    for name in names:
        T, B, I, H, O = SHAPES[name]
        rnn, fc = torch.nn.RNN(I, H).to(dev), torch.nn.Linear(H, O).to(dev)
        x, y = torch.randn(T, B, I, device=dev), torch.randn(T, B, O, device=dev)
        def forward():
            with torch.no_grad():
                fc(rnn(x)[0])
        def train_step():
            rnn.zero_grad(); fc.zero_grad()
            torch.nn.functional.mse_loss(fc(rnn(x)[0]), y).backward()
        for mode, fn in (("forward", forward), ("train_step", train_step)):
            s = bench(fn)
            rec = {"peer": "pytorch-cuda", "torch": torch.__version__,
                   "device": torch.cuda.get_device_name(), "shape": name, "mode": mode,
                   "ms": round(s * 1e3, 4), "samples_per_s": round(T * B / s)}
            if mode == "forward":
                rec["recurrent_tflops"] = round(2 * B * H * H * T / s / 1e12, 4)
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(SHAPES))
