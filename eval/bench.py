"""Benchmark: scoring 10,000 generations' embeddings, fast forms vs brute force.

``python -m eval.bench [--n 10000] [--d 384] [--groups 100] [--repeat 3]``

Random unit vectors stand in for embeddings (the metric cost does not depend on what
they encode). Two layouts:
- one group of n samples (the worst case for the n x n forms);
- ``groups`` prompts x n/groups samples each (how eval scores: per prompt).
For each: mean pairwise dissimilarity via ||sum e||^2 (O(n d)) against the n x n cosine
matrix, and Vendi via the d x d matrix (when d < n) against the n x n eigendecomposition.
Prints seconds (best of ``repeat``) and the brute/fast ratio, and checks they agree.
With 100 samples per prompt and d = 384, n < d: Vendi's n x n matrix is already the
smaller one, so the "fast" and brute-force routes coincide there (ratio ~1 by design).
The one-group brute-force Vendi (a 10,000 x 10,000 eigendecomposition) takes minutes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval.metrics.embedding import (
    mean_pairwise_dissimilarity,
    mean_pairwise_dissimilarity_bruteforce,
    vendi_score,
    vendi_score_bruteforce,
)


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="generations in total")
    parser.add_argument("--d", type=int, default=384, help="embedding dimension (MiniLM: 384)")
    parser.add_argument("--groups", type=int, default=100, help="prompts in the grouped layout")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (set before numpy loads)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # keep a shared machine usable

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    groups = np.array_split(X, args.groups)
    print(
        f"{args.n} unit vectors, d={args.d}; grouped: {args.groups} prompts x {args.n // args.groups} samples; "
        f"best of {args.repeat}"
    )
    print(f"{'layout':<28}{'metric':<26}{'fast s':>10}{'brute s':>10}{'brute/fast':>12}{'max |diff|':>12}")
    cases = [
        (
            "one group",
            "pairwise dissimilarity",
            lambda: [mean_pairwise_dissimilarity(X)],
            lambda: [mean_pairwise_dissimilarity_bruteforce(X)],
        ),
        ("one group", "vendi", lambda: [vendi_score(X)], lambda: [vendi_score_bruteforce(X)]),
        (
            f"{args.groups} groups",
            "pairwise dissimilarity",
            lambda: [mean_pairwise_dissimilarity(g) for g in groups],
            lambda: [mean_pairwise_dissimilarity_bruteforce(g) for g in groups],
        ),
        (
            f"{args.groups} groups",
            "vendi",
            lambda: [vendi_score(g) for g in groups],
            lambda: [vendi_score_bruteforce(g) for g in groups],
        ),
    ]
    for layout, metric, fast, brute in cases:
        t_fast, v_fast = best_of(fast, args.repeat)
        t_brute, v_brute = best_of(brute, 1 if layout == "one group" and metric == "vendi" else args.repeat)
        diff = float(np.max(np.abs(np.array(v_fast) - np.array(v_brute))))
        print(f"{layout:<28}{metric:<26}{t_fast:>10.4f}{t_brute:>10.4f}{t_brute / t_fast:>12.1f}{diff:>12.2e}")


if __name__ == "__main__":
    main()
