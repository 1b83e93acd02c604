"""Benchmark of `cpsweep.fisher_trace`: the "func" and "gram" backends on the project's models.

Times the exact method (C backward passes) and the sampled one (samples=1) on
  (a) cnn1d, the MNIST-1D conv net, on (N, 1, 40) signals, 10 classes;
  (b) all_cnn_c, the paper's All-CNN (nine conv-BN-ReLU blocks, 96-96-192/2-192-192-192/2-192-192(1x1)-10(1x1),
      global average pool), on (N, 3, 32, 32) images, 10 classes;
  (c) resnet18, the CIFAR pre-activation ResNet-18 of `sweeps/resnet18.yaml`, on the same images;
with models from `cpsweep.engine.models.build_model` when it is importable, else local stand-ins of the same shape.
Each (model, method, backend) gets one warm-up call on a small probe, then the median of `repeats` timed
calls; the backends' calls are interleaved, so that a change in machine load hits them alike.

On the CPU the default is one intra-op thread (--threads): on a shared two-core machine, two OpenMP
threads competing with another process's threads made every call up to 100x slower. All-CNN-C gets one
timed call per probe size on the CPU (--big-repeats); its exact trace costs ten backward passes per example.

The JSON is rewritten after every row (a run stopped by a time-out keeps what it measured). `--quick`:
the exact method only, one probe size per model (100; on a CPU tiny models and probes, a rehearsal of the
GPU run).

Usage: python benchmarks/bench_fisher.py [--device cpu|cuda] [--quick] [--out benchmarks/results/fisher.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_io import write_json  # noqa: E402
from cpsweep.engine.fisher import fisher_trace  # noqa: E402

SHAPES = {"cnn1d": (1, 40), "all_cnn_c": (3, 32, 32), "resnet18": (3, 32, 32)}
TINY_OPTIONS = {"all_cnn_c": {"width": 1 / 12}, "resnet18": {"width": 8}, "cnn1d": {}}  # --quick on a CPU


def _conv_bn_relu(conv: nn.Module, c_out: int, bn: type) -> list[nn.Module]:
    return [conv, bn(c_out), nn.ReLU()]


def standin(name: str, num_classes: int = 10) -> nn.Module:
    """Local stand-ins with the architectures of cpsweep.engine.models. cnn1d (defaults) and all_cnn_c."""
    layers: list[nn.Module] = []
    if name == "cnn1d":  # 5 conv-BN-ReLU blocks of 32 channels, kernel 5, stride 2 on blocks 2 and 4; GAP; Linear
        c_in = 1
        for i in range(5):
            layers += _conv_bn_relu(nn.Conv1d(c_in, 32, 5, 2 if i % 2 else 1, 2, bias=False), 32, nn.BatchNorm1d)
            c_in = 32
        return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, num_classes))
    plan = [(3, 96, 3, 1), (96, 96, 3, 1), (96, 192, 3, 2), (192, 192, 3, 1), (192, 192, 3, 1), (192, 192, 3, 2),
            (192, 192, 3, 1), (192, 192, 1, 1), (192, num_classes, 1, 1)]
    for c_in, c_out, k, s in plan:
        layers += _conv_bn_relu(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), c_out, nn.BatchNorm2d)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def build(name: str, options: dict | None = None) -> tuple[nn.Module, str]:
    try:
        from cpsweep.engine.models import build_model
    except ImportError as e:
        print(f"note: cpsweep.engine.models.build_model not importable ({e}); using a local stand-in for {name}")
        torch.manual_seed(0)
        return standin(name), "standin"
    return build_model(name, options or {}, in_shape=SHAPES[name], num_classes=10), "cpsweep.engine.models"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(model, x, backend: str, method: str) -> tuple[float, float]:
    """Seconds of one `fisher_trace` call and the trace it returned."""
    kw = {}
    if method == "sampled":
        kw = {"samples": 1, "generator": torch.Generator(device=x.device).manual_seed(0)}
    _sync(x.device)
    start = time.perf_counter()
    total = fisher_trace(model, x, method=method, backend=backend, **kw).total
    _sync(x.device)
    return time.perf_counter() - start, total


def main(argv: list[str] | None = None) -> int:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default=default_device)
    ap.add_argument("--out", default="benchmarks/results/fisher.json")
    ap.add_argument("--models", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    ap.add_argument("--backends", nargs="+", choices=["func", "gram"], default=["func", "gram"])
    ap.add_argument("--methods", nargs="+", choices=["exact", "sampled"], default=["exact", "sampled"])
    ap.add_argument("--probes", nargs="+", type=int, default=[100, 300], help="probe sizes for cnn1d")
    ap.add_argument("--big-probes", nargs="+", type=int, default=[100, 300], help="probe sizes for all_cnn_c")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per configuration (cnn1d)")
    ap.add_argument("--big-repeats", type=int, default=None,
                    help="timed calls per configuration for all_cnn_c (default: 1 on cpu, 3 on cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on cpu)")
    ap.add_argument("--quick", action="store_true", help="exact method, one probe size (on a CPU: tiny models)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    tiny = args.quick and on_cpu
    if args.quick:
        args.methods = ["exact"]
        args.probes, args.big_probes = ([20], [4]) if tiny else ([100], [100])
        args.repeats, args.big_repeats = 1, 1
    if args.threads or on_cpu:
        torch.set_num_threads(args.threads or 1)
    big_probes = args.big_probes
    big_repeats = args.big_repeats or (1 if on_cpu else 3)

    rows = []
    began = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    card = torch.cuda.get_device_name(device) if not on_cpu else (platform.processor() or platform.machine())
    meta = {"device": str(device), "device_name": card, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "tiny_models": tiny,
            "repeats": args.repeats, "big_repeats": big_repeats}
    out = Path(args.out)

    def save(complete: bool = False) -> None:
        speedups = {}
        for r in rows:
            func = [f for f in rows if r["backend"] == "gram" and f["backend"] == "func"
                    and all(f[k] == r[k] for k in ("model", "method", "probe"))]
            if func:
                speedups[f"{r['model']}/{r['method']}/{r['probe']}"] = func[0]["seconds"] / r["seconds"]
        write_json(str(out), {"meta": {**meta, "wall_seconds": time.perf_counter() - began,
                                       "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
                              "results": rows, "func_over_gram": speedups, "complete": complete})

    save()
    for name in args.models:
        model, source = build(name, TINY_OPTIONS[name] if tiny else None)
        model = model.to(device)
        probes, repeats = (big_probes, big_repeats) if name != "cnn1d" else (args.probes, args.repeats)
        x_all = torch.randn((max(probes), *SHAPES[name]), generator=gen).to(device)
        for method in args.methods:
            for backend in args.backends:
                run_once(model, x_all[:min(8, len(x_all))], backend, method)  # warm-up
            for n in probes:
                times: dict[str, list[float]] = {b: [] for b in args.backends}
                traces = {}
                for _ in range(repeats):  # interleaved, so that a change of load hits every backend alike
                    for backend in args.backends:
                        sec, traces[backend] = run_once(model, x_all[:n], backend, method)
                        times[backend].append(sec)
                for backend in args.backends:
                    sec = statistics.median(times[backend])
                    rows.append({"model": name, "source": source, "backend": backend, "method": method, "probe": n,
                                 "seconds": sec, "ms_per_example": 1e3 * sec / n, "times": times[backend],
                                 "trace": traces[backend]})
                    print(f"{name:10s} {backend:5s} {method:8s} N={n:4d} {sec:9.3f} s  {1e3 * sec / n:9.2f} ms/ex"
                          f"  tr F = {traces[backend]:.6g}", flush=True)
                save()

    print("\n| model | backend | method | probe | seconds | ms per example |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['backend']} | {r['method']} | {r['probe']} | {r['seconds']:.3f} | "
              f"{r['ms_per_example']:.2f} |")
    save(complete=True)
    for key, ratio in json.loads(out.read_text())["func_over_gram"].items():
        print(f"func/gram time ratio {key}: {ratio:.2f}")
    print(f"\nwrote {out} ({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
