"""TotalFMSlicer performance benchmark: ours against a naive baseline written the published way.

    python Testing/benchmarks/run_benchmarks.py [--quick] [--model demo|PATH] [--threads N]
                                                [--compile] [--skip-memory] [--json FILE]
                                                [--only SECTION ...] [--device cpu|cuda]

One run prints, on the same inputs and as ratios of median wall times (the machine may
be shared: every contender is warmed up, then all run in turn, medians are compared):

(a) preprocessing of all default organs: the real example CT, and a full-resolution CT
    (512x512x336) made from it (bench_cases.FULL_DESCRIPTION); baseline = published_style
    (whole SimpleITK resample, one full label scan per organ);
(b) image encoding of N organs at the published size (OFFICIAL_ARCH, random weights) and at
    the demo size: baseline = batch 1, fp32, attention as softmax(q k^T) v; ours = batched,
    SDPA, inference mode, threads = physical cores, at several batch sizes, plus bf16
    autocast (where bf16 is native), fp16 autocast (CUDA), int8 dynamic quantisation (CPU),
    optionally torch.compile;
(c) peak RSS of analysing the full-resolution CT, in a fresh process;
(d) the encoder's achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode) against the
    measured torch.matmul GFLOP/s of the same shapes and dtype (CPU: same thread count);
(e) free-text search latency over all organs of the case (demo model, embeddings cached),
    plain and organ-phrased queries, fresh (text encoder runs) and repeated, and the
    query encoder's agreement with fp32 (cosine, same ranking and matches);
(f) each mode's min cosine to the fp32 reference embeddings.

``--only encoder --device cuda`` runs (b, d, f) alone on a GPU: it needs only torch and numpy
(no SimpleITK, sentence-transformers or sample data) and encodes synthetic crops, so CPU
and GPU runs of it compare; the other sections always run on the CPU.

Not a unit test; nothing here asserts timings. --quick: fewer repeats and organs (~1-2 min).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUERIES = ["kidney stone", "hypodense liver lesion", "pleural effusion", "splenomegaly", "gallstones",
           "aortic aneurysm", "renal cyst", "hepatic steatosis", "ascites", "lymphadenopathy", "bowel obstruction",
           "pancreatic atrophy", "atherosclerosis", "hydronephrosis", "metastatic disease"]


SECTIONS = ("preprocessing", "encoder", "memory", "search")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and organs")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None,
                   help="run only these sections; 'encoder' alone needs only torch and numpy (synthetic crops)")
    p.add_argument("--device", default="cpu",
                   help="device of the encoder section: cpu (default) or cuda[:N]; the other sections run on the CPU")
    p.add_argument("--model", default=None,
                   help="'demo' (bundled demo model, else a random demo-size model) or a checkpoint path")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--skip-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--json", type=Path, default=None, help="also write all numbers to this file")
    return p.parse_args(argv)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                      enumerate(zip(r, widths))) for r in rows)


def section_preprocessing(cases, repeats) -> tuple[dict, str]:
    import bench_parts

    rows = [["case", "organs", "published-style", "ours", "speed-up", "CPU time: published / ours",
             "crops identical"]]
    out = {}
    for name, (ct, seg) in cases.items():
        r = bench_parts.preprocessing(ct, seg, repeats)
        out[name] = r
        shape = "x".join(str(n) for n in r["shape"][::-1])
        rows.append([f"{name} ({shape})", str(r["organs"]), fmt_s(r["baseline_s"]), fmt_s(r["ours_s"]),
                     f"{r['speedup']:.1f}x",
                     f"{fmt_s(r['baseline_cpu_s'])} / {fmt_s(r['ours_cpu_s'])} = {r['cpu_speedup']:.1f}x",
                     "yes" if r["identical"] else f"no (max |diff| {r['max_abs_diff']:.2g})"])
    return out, table(rows)


def section_encoder(label, arch, embed_dim, images, repeats, batch_sizes, modes, compile_model,
                    device="cpu") -> tuple[dict, str]:
    import bench_parts
    import torch

    from TotalFMLib.models.image_tower import build_image_tower
    from TotalFMLib.models.precision import torch_dtype

    torch.manual_seed(0)
    tower = build_image_tower(arch, embed_dim).eval()
    flops = bench_parts.encoder_flops(tower, images[:1])  # on the CPU; bench_parts.encoder moves both
    r = bench_parts.encoder(tower, images, repeats, batch_sizes, modes,
                            default_batch=max(batch_sizes), compile_model=compile_model, device=device)
    tokens = (arch.image_size // arch.image_patch_size) ** 2 * (arch.frames // arch.frame_patch_size)
    n, batch = len(images), min(max(batch_sizes), len(images))

    def peak(b: int, dtype: str) -> float:
        return bench_parts.matmul_gflops(min(b, n) * tokens, arch.dim, arch.mlp_dim, repeats=3,
                                         dtype=torch_dtype(dtype), device=device)

    peaks = {f"fp32 batch {b}": peak(b, "fp32") for b in sorted({1, *batch_sizes})}
    peaks.update({f"{m} batch {batch}": peak(batch, m) for m in modes if m in ("bf16", "fp16")})
    r.update(gflop_per_organ=flops / 1e9, matmul_gflops=peaks)
    rows = [["mode", "s/organ", "vs baseline", "GFLOP/s", "% of matmul (same dtype, batch)", "min cosine to fp32"]]
    for name, row in r["rows"].items():
        gfs = flops / 1e9 / row["s_per_organ"]
        key = f"{row['dtype']} batch {row['batch']}"
        row.update(gflops=gfs, matmul_fraction=gfs / peaks[key] if key in peaks else None)
        shown = "baseline (batch 1, fp32, naive attention)" if name == "baseline" else \
            name if name.startswith("fp32 batch") else f"{name} (batch {row['batch']})"
        rows.append([shown, f"{row['s_per_organ']:.4f}", f"{row['speedup']:.2f}x", f"{gfs:.1f}",
                     "-" if row["matmul_fraction"] is None else f"{100 * row['matmul_fraction']:.0f}%",
                     f"{row['cosine_min']:.6f}"])
    text = (f"  {label}: {flops / 1e9:.2f} GFLOP per organ (FlopCounterMode), {n} organs; torch.matmul "
            f"(batch x {tokens} tokens) x {arch.dim} x {arch.mlp_dim}: "
            + ", ".join(f"{k}: {g:.0f}" for k, g in peaks.items()) + " GFLOP/s\n" + table(rows))
    if r["compile_s"] is not None:
        text += f"\n  torch.compile warm-up (compile) took {r['compile_s']:.1f} s"
    return r, text


def section_memory(model_path, full_model_path, ct_path, seg_path, threads) -> tuple[dict, str]:
    out, rows = {}, [["run (fresh process, full-resolution CT)", "peak RSS", "organs", "wall"]]
    runs = [("analyse: load + crops + encode + score, " + "demo-size model", model_path, [])]
    if full_model_path is not None:
        runs.append(("crops of all organs + one batch of 8 at the published size", full_model_path, ["--one-batch"]))
    for label, path, extra in runs:
        cmd = [sys.executable, str(HERE / "peak_memory.py"), "--model", str(path), "--ct", str(ct_path),
               "--seg", str(seg_path)] + extra + (["--threads", str(threads)] if threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append([label, "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1], "", ""])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out[label] = r
        rows.append([label, f"{r['peak_rss_mb'] / 1024:.2f} GB", str(r["organs"]), fmt_s(r["seconds"])])
    return out, table(rows)


def section_search(model_path, case) -> tuple[dict, str]:
    import bench_parts

    from TotalFMLib import TotalFM

    model = TotalFM.load(model_path, device="cpu")
    t = time.perf_counter()
    embeddings = model.encode_image(*case)
    first = time.perf_counter() - t
    t = time.perf_counter()
    model.encode_image(*case)
    second = time.perf_counter() - t
    model.search(embeddings, "warm-up query")
    model.search(embeddings, "warm-up query", style="plain" if model.config.query_style != "plain" else "organ")
    r = bench_parts.search_latency(model, embeddings, QUERIES)
    reference = TotalFM.load(model_path, device="cpu", query_precision="fp32")
    agreement = bench_parts.search_agreement(model, reference, embeddings, QUERIES)
    rows = [["query style", "fresh query (median / max)", "+ 19-digit marker (median / max)",
             "repeated (median)", "min cosine to fp32", "as fp32: matches / top 3 / order", "max |d similarity|"]]
    for style, v in r.items():
        a, n = agreement[style], agreement[style]["queries"]
        rows.append([style, f"{v['fresh_median_ms']:.1f} / {v['fresh_max_ms']:.1f} ms",
                     f"{v['marked_median_ms']:.1f} / {v['marked_max_ms']:.1f} ms", f"{v['cached_median_ms']:.2f} ms",
                     f"{a['cosine_min']:.6f} ({a['strings']} strings)",
                     f"{a['same_matches']}/{n} / {a['same_top']}/{n} / {a['same_order']}/{n}",
                     f"{a['max_similarity_diff']:.1e}"])
    r.update(organs=len(embeddings), encode_first_s=first, encode_cached_s=second, agreement=agreement,
             query_precision=model.query_precision)
    text = (f"  {len(embeddings)} organs of the real example CT; default style of this model: "
            f"{model.config.query_style}; query text encoder: {model.query_precision} (fp32 for scoring prompts)\n"
            + table(rows) +
            f"\n  fresh: the query as typed, first search of it; the marker (the earlier runs' way to make a query"
            f" new) adds 11 tokens per string\n  per-case embedding cache: first encode_image {fmt_s(first)}, "
            f"same case again {second * 1e3:.1f} ms (encoder not run)")
    return r, text


def encoder_sections(args, example) -> dict:
    """(b, d, f): the image encoder at the demo and the published size, on ``args.device``."""
    import bench_cases
    import torch

    from TotalFMLib.config import OFFICIAL_ARCH, OFFICIAL_EMBED_DIM
    from TotalFMLib.models.precision import bf16_supported

    quick, cuda = args.quick, torch.device(args.device).type == "cuda"
    modes = [m for m in ("bf16", "fp16") if m == "bf16" and bf16_supported(args.device) or m == "fp16" and cuda]
    modes += [] if cuda else ["int8"]
    demo, full = bench_cases.DEMO_ARCH, OFFICIAL_ARCH
    n_demo = 20
    n_full = (4 if quick else 16) if cuda else (1 if quick else 4)
    if example is None:
        source = "synthetic crops (smooth random volumes in [0, 1], seed 0; timings do not depend on content)"
        demo_crops = bench_cases.synthetic_crops(n_demo, demo.image_size, demo.frames)
        full_crops = bench_cases.synthetic_crops(n_full, full.image_size, full.frames)
    else:
        from TotalFMLib.crops.organ_crops import organ_crops

        source = "crops of the real example CT"
        demo_crops = organ_crops(*example, crop_size=demo.image_size, frames=demo.frames).images
        full_crops = organ_crops(*example).images[:n_full]
    where = (f"CUDA ({torch.cuda.get_device_name(args.device)}; fp32 matmuls without TF32, torch's default)"
             if cuda else f"CPU, {torch.get_num_threads()} threads")
    repeats_demo, repeats_full = (3 if quick else 5), (1 if quick else 2)
    if cuda:
        repeats_full = 3 if quick else 5
    print(f"(b, d, f) image encoder on {where}, median of {repeats_demo} (demo size) / {repeats_full} "
          f"(published size) interleaved runs; {source}")
    results = {}
    r, text = section_encoder("demo size", demo, bench_cases.DEMO_EMBED, demo_crops, repeats_demo,
                              [1, 8] if quick else [1, 2, 4, 8, 16], modes, args.compile, args.device)
    results["encoder_demo"] = r
    print(text + "\n", flush=True)
    full_batches = ([1, 4] if quick else [1, 4, 16]) if cuda else ([1] if quick else [1, 2, 4])
    r, text = section_encoder("published size (131.8 M parameters, random weights)", full, OFFICIAL_EMBED_DIM,
                              full_crops, repeats_full, full_batches, modes, args.compile, args.device)
    results["encoder_full"] = r
    print(text + "\n", flush=True)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    from TotalFMLib import runtime

    threads = runtime.setup(args.threads)["threads"]  # before torch loads: OpenMP threads wait passively
    import bench_cases
    import torch

    quick, only = args.quick, set(args.only or SECTIONS) - ({"memory"} if args.skip_memory else set())
    workdir = Path(tempfile.mkdtemp(prefix="totalfm_bench_"))
    os.environ.setdefault("TOTALFM_HOME", str(workdir / "home"))  # text cache of this run only
    machine = bench_cases.machine_description(args.device)
    results = {"machine": machine, "threads": threads, "quick": quick, "device": args.device,
               "sections": sorted(only)}
    print("TotalFMSlicer performance benchmark" + (" (--quick)" if quick else "")
          + ("" if only == set(SECTIONS) else f" (--only {' '.join(s for s in SECTIONS if s in only)})"))
    print(f"machine: {machine['cpu']}, {machine['physical_cores']} physical cores ({machine['logical_cpus']} logical), "
          f"{machine['cpu_capability']}, native bf16: {'yes' if machine['bf16_native'] else 'no'}, "
          f"GPU: {machine['gpu']}; torch {machine['torch']}; {threads} threads; "
          f"load average at start {machine['load_average'][0]:.1f}")

    example = full = None
    if only - {"encoder"}:  # everything but the encoder reads the real example case
        example = bench_cases.example_case()
    if only & {"preprocessing", "memory"}:
        full = bench_cases.full_resolution_case(*example)
        print(f"full-resolution CT: {bench_cases.FULL_DESCRIPTION}")
    model_path = None
    if only & {"memory", "search"}:
        model_path, model_text = bench_cases.resolve_model(args.model, workdir)
        print(f"model for search/memory: {model_text}")
    print()

    if "preprocessing" in only:
        repeats = 2 if quick else 5
        print(f"(a) preprocessing, all default organs present (median of {repeats} interleaved runs)")
        r, text = section_preprocessing({"real example CT": example, "full-resolution CT": full}, repeats)
        results["preprocessing"] = r
        print(text + "\n", flush=True)

    if "encoder" in only:
        results.update(encoder_sections(args, example))

    if "memory" in only:
        from TotalFMLib.config import OFFICIAL_ARCH, OFFICIAL_EMBED_DIM

        ct_path, seg_path = bench_cases.write_case(*full, workdir / "full_case")
        full_model = None if quick else bench_cases.random_model(workdir / "full_size_random.pt", OFFICIAL_ARCH,
                                                                 OFFICIAL_EMBED_DIM)
        print("(c) peak memory (target < 4 GB)")
        r, text = section_memory(model_path, full_model, ct_path, seg_path, args.threads)
        results["memory"] = r
        print(text + "\n", flush=True)

    if "search" in only:
        print("(e) free-text search latency (target < 50 ms), embeddings cached")
        r, text = section_search(model_path, example)
        results["search"] = r
        print(text)
    results["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end {results['load_average_end'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
