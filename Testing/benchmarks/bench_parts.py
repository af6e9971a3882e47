"""The measurements of run_benchmarks.py: each returns plain numbers, nothing is printed here.

Timing rule (the machine is shared and noisy): every contender is run once to warm up,
then all contenders are run in turn ``repeats`` times on the same inputs and the median
wall time of each is kept; results are compared as ratios of those medians.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch


def interleaved(contenders: dict, repeats: int, warmups: dict | None = None, cpu: dict | None = None
                ) -> dict[str, float]:
    """Median wall seconds of each callable, run round-robin after one warm-up each
    (``warmups[name]`` instead of the call itself where given: a smaller input). With
    ``cpu`` given, it receives the median process CPU seconds (all threads) of each."""
    for name, fn in contenders.items():
        (warmups or {}).get(name, fn)()
    times = {name: [] for name in contenders}
    cpu_times = {name: [] for name in contenders}
    for _ in range(max(1, repeats)):
        for name, fn in contenders.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu_times[name].append(time.process_time() - c)
    if cpu is not None:
        cpu.update({name: statistics.median(ts) for name, ts in cpu_times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


# ------------------------------------------------------------------ (a) preprocessing
def preprocessing(ct, seg, repeats: int) -> dict:
    """Published-style (whole resample + one full label scan per organ) vs ``organ_crops``."""
    import published_style as ps

    from TotalFMLib.crops.organ_crops import organ_crops

    out, cpu = {}, {}
    timings = interleaved({
        "baseline": lambda: out.__setitem__("baseline", ps.preprocess(ct, seg)),
        "ours": lambda: out.__setitem__("ours", organ_crops(ct, seg)),
    }, repeats, cpu=cpu)
    base, ours = out["baseline"], out["ours"]
    same_organs = list(base) == ours.organs
    max_diff = max(float((base[n] - ours.images[i]).abs().max()) for i, n in enumerate(ours.organs)) \
        if same_organs else float("nan")
    identical = same_organs and all(torch.equal(base[n], ours.images[i]) for i, n in enumerate(ours.organs))
    return {"baseline_s": timings["baseline"], "ours_s": timings["ours"],
            "speedup": timings["baseline"] / timings["ours"], "baseline_cpu_s": cpu["baseline"],
            "ours_cpu_s": cpu["ours"], "cpu_speedup": cpu["baseline"] / cpu["ours"], "organs": len(ours.organs),
            "shape": tuple(ct.shape), "identical": identical, "max_abs_diff": max_diff}


# ------------------------------------------------------------------ (b, d, f) encoder
def encoder_flops(tower, x1) -> float:
    """FLOPs of one organ (batch 1), counted by torch's FlopCounterMode on the naive
    forward (every matmul explicit, attention included)."""
    import published_style as ps
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        ps.naive_forward(tower, x1)
    return float(counter.get_total_flops())


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(m: int, k: int, n: int, repeats: int, dtype=torch.float32, device="cpu") -> float:
    """Median sustained GFLOP/s of torch.matmul (m x k) @ (k x n) of ``dtype`` on ``device``
    (CPU: at the current thread count)."""
    a, b = torch.rand(m, k, dtype=dtype, device=device), torch.rand(k, n, dtype=dtype, device=device)
    gflop = 200 if torch.device(device).type == "cuda" else 20  # per timing
    reps = max(1, int(gflop * 1e9 // (2 * m * k * n)))

    def run():
        for _ in range(reps):
            torch.matmul(a, b)
        synchronize(device)

    t = interleaved({"mm": run}, repeats)["mm"] / reps
    return 2 * m * k * n / t / 1e9


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def encoder(tower, images: torch.Tensor, repeats: int, batch_sizes, modes, default_batch: int = 8,
            compile_model: bool = False, device="cpu") -> dict:
    """Baseline (naive attention, batch 1, fp32) vs ours (batched, SDPA, inference mode) at
    each batch size, and the optional precision modes at ``default_batch``; each mode's
    min cosine to the fp32 reference (the baseline's own output). On a GPU the tower and
    the crops are placed there first, so both contenders time the encoder alone."""
    import published_style as ps

    from TotalFMLib.models.image_tower import encode_batches
    from TotalFMLib.models.precision import precision_context, prepare_image_tower

    n = len(images)
    tower.to(device).eval()
    images = images.to(device)
    results = {}
    batch = min(default_batch, n)
    runners = {"baseline": lambda x: ps.encode_one_by_one(tower, x)}
    spec = {"baseline": (1, "fp32")}  # each runner's (batch size, precision)
    for b in batch_sizes:
        runners[f"fp32 batch {b}"] = lambda x, b=b: encode_batches(tower, x, batch_size=b)
        spec[f"fp32 batch {b}"] = (b, "fp32")
    for mode in modes:
        prepared = prepare_image_tower(tower, mode)

        def run(x, mode=mode, prepared=prepared):
            with precision_context(mode, device):
                return encode_batches(prepared, x, batch_size=batch)
        runners[mode] = run
        spec[mode] = (batch, mode)
    compile_s = None
    if compile_model:
        t = time.perf_counter()
        compiled = torch.compile(tower)
        encode_batches(compiled, images[:batch], batch_size=batch)
        compile_s = time.perf_counter() - t
        runners["fp32 torch.compile"] = lambda x: encode_batches(compiled, x, batch_size=batch)
        spec["fp32 torch.compile"] = (batch, "fp32")
    contenders = {name: (lambda name=name, fn=fn: results.__setitem__(name, fn(images)))
                  for name, fn in runners.items()}
    warmups = {name: (lambda fn=fn, b=spec[name][0]: fn(images[:b])) for name, fn in runners.items()}
    timings = interleaved(contenders, repeats, warmups)
    reference = results["baseline"]
    rows = {}
    for name, seconds in timings.items():
        rows[name] = {"s_per_organ": seconds / n, "speedup": timings["baseline"] / seconds,
                      "cosine_min": cosine_min(results[name], reference), "batch": spec[name][0],
                      "dtype": spec[name][1]}
    return {"rows": rows, "organs": n, "compile_s": compile_s}


# ------------------------------------------------------------------ (e) search latency
def search_latency(model, embeddings: dict, queries: list[str], styles=("plain", "organ")) -> dict:
    """Median and max ms per query, for a model that has not seen ``queries`` yet:

    * fresh: each query as typed, searched for the first time (the text encoder runs);
    * marked: the query plus a 19-digit marker that makes it new (the method of earlier
      runs; the marker is 11 more tokens per string, so the encoder does about twice the work);
    * repeated: a query searched again (from the query cache).
    """
    out = {}
    for style in styles:
        timings = {"fresh": [], "marked": []}
        for q in queries:
            for kind, text in (("fresh", q), ("marked", f"{q} ({style} {time.perf_counter_ns()})")):
                t = time.perf_counter()
                model.search(embeddings, text, style=style)
                timings[kind].append(time.perf_counter() - t)
        again = []
        for q in queries[:5]:
            t = time.perf_counter()
            model.search(embeddings, q, style=style)
            again.append(time.perf_counter() - t)
        out[style] = {f"{kind}_{stat}_ms": 1e3 * fn(ts) for kind, ts in timings.items()
                      for stat, fn in (("median", statistics.median), ("max", max))}
        out[style]["cached_median_ms"] = 1e3 * statistics.median(again)
    return out


def search_agreement(model, reference, embeddings: dict, queries: list[str], styles=("plain", "organ"),
                     top: int = 3) -> dict:
    """Per style: the min cosine of ``model``'s query vectors (every per-organ string) to
    ``reference``'s (the fp32 text encoder); on how many queries both give the same matched
    organs, the same ``top`` organs in the same order, and the same whole order; and the
    largest difference of an organ's similarity between the two."""
    from TotalFMLib.vocabulary import catalogue
    from TotalFMLib.vocabulary.prompts import query_text

    organs = [catalogue.organ(name) for name in embeddings]
    out = {}
    for style in styles:
        texts = [query_text(o, q, style) for q in queries for o in (organs if style == "organ" else organs[:1])]
        counts = {"same_matches": 0, "same_top": 0, "same_order": 0}
        largest = 0.0
        for q in queries:
            ours, ref = model.search(embeddings, q, style=style), reference.search(embeddings, q, style=style)
            order, ref_order = [h.organ for h in ours], [h.organ for h in ref]
            counts["same_matches"] += {h.organ for h in ours if h.matched} == {h.organ for h in ref if h.matched}
            counts["same_top"] += order[:top] == ref_order[:top]
            counts["same_order"] += order == ref_order
            ref_similarity = {h.organ: h.similarity for h in ref}
            largest = max([largest] + [abs(h.similarity - ref_similarity[h.organ]) for h in ours])
        out[style] = {"cosine_min": cosine_min(model.encode_queries(texts), reference.encode_queries(texts)),
                      "max_similarity_diff": largest, "queries": len(queries), "strings": len(texts), "top": top,
                      **counts}
    return out
