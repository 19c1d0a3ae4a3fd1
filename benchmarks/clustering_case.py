"""Time one clustering library on one data size; run as a subprocess, prints JSON.

Run in its own process so that the peak resident set size (`VmHWM` in
/proc/self/status) belongs to this case alone:

    python -m benchmarks.clustering_case --library sklearn --algorithm kmeans \\
        --n-samples 70000 --n-features 256

The data are standard normal float32 values from a fixed seed, so every library
gets the same matrix and the same initial means (rows of the matrix chosen by
that seed). On unstructured data Lloyd's algorithm keeps moving for many
iterations, so scikit-learn and faiss run every iteration they are given.

scikit-learn and faiss are timed on whole fits of `--iterations A B`
iterations. The difference of the two times divided by the difference of the
iteration counts is the time of one iteration, free of the fixed costs of a
fit (input checks, copies, the final assignment). The jitted dcan_jax step is
timed per call, after its compilation, which is reported on its own. Its
k-means case times the means-only Lloyd iteration, the work of scikit-learn's
and faiss's iterations, and then the full `kmeans_step`, which also updates
the per-cluster variances.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import threadpoolctl

LIBRARIES = ("jax", "sklearn", "faiss")
ALGORITHMS = ("kmeans", "gmm")

# Variance floor of both GMMs: dcan_jax's `covariance_reg` default, passed to
# scikit-learn as `reg_covar`.
COVARIANCE_REG = 1e-4

# Rows generated per chunk, which bounds the temporaries of data generation.
_CHUNK_ROWS = 65_536


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB.

    Reads `VmHWM` from /proc/self/status. `getrusage`'s `ru_maxrss` is no use
    in a subprocess on Linux: it keeps the parent's peak across `execve`.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status; peak memory needs Linux.")


def make_data(n_samples: int, n_features: int, n_clusters: int, seed: int):
    """Return standard normal data `(n_samples, n_features)` float32 and initial means."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_samples, n_features), np.float32)
    for start in range(0, n_samples, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n_samples)
        x[start:stop] = rng.standard_normal((stop - start, n_features), dtype=np.float32)
    rows = rng.choice(n_samples, n_clusters, replace=False)
    return x, x[rows].copy()


def _time_fits(fit: Callable[[int], tuple[int, np.ndarray]], iterations, repeats):
    """Time `fit(max_iter)` for both iteration counts, keeping the best of `repeats`."""
    seconds, n_iter, means = [], [], None
    for max_iter in iterations:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            done, means = fit(max_iter)
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
        n_iter.append(done)
    per_iteration = (seconds[1] - seconds[0]) / max(n_iter[1] - n_iter[0], 1)
    return {
        "profile_s": None,
        "seconds": seconds,
        "n_iter": n_iter,
        "iteration_s": per_iteration,
        "compile_s": None,
        "means": means,
        "means_by_iteration": None,
    }


def run_sklearn(algorithm, x, initial_means, iterations, repeats, threads=None):
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    n_clusters = initial_means.shape[0]

    def fit_kmeans(max_iter):
        model = KMeans(
            n_clusters, init=initial_means, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd"
        ).fit(x)
        return model.n_iter_, model.cluster_centers_

    def fit_gmm(max_iter):
        model = GaussianMixture(
            n_clusters,
            covariance_type="diag",
            tol=0.0,
            reg_covar=COVARIANCE_REG,
            max_iter=max_iter,
            n_init=1,
            # The three *_init arguments replace what init_params computes,
            # and "random" makes that computation cheap.
            init_params="random",
            weights_init=np.full(n_clusters, 1.0 / n_clusters),
            means_init=initial_means,
            precisions_init=np.ones_like(initial_means),
            random_state=0,
        )
        with warnings.catch_warnings():
            # tol=0 never converges, which is the point here.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x)
        return model.n_iter_, model.means_

    fit = fit_kmeans if algorithm == "kmeans" else fit_gmm
    # threadpoolctl caps both OpenMP (k-means) and BLAS (GMM) threads.
    with threadpoolctl.threadpool_limits(threads):
        return _time_fits(fit, iterations, repeats)


def run_faiss(algorithm, x, initial_means, iterations, repeats, threads=None):
    if algorithm != "kmeans":
        raise ValueError(f"faiss has no {algorithm!r}; only 'kmeans' is supported.")
    import faiss

    faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
    n_clusters = initial_means.shape[0]

    def fit(max_iter):
        # max_points_per_centroid above n_samples / n_clusters stops faiss from
        # training on a subsample, so it uses every point as the others do.
        model = faiss.Kmeans(
            x.shape[1], n_clusters, niter=max_iter, max_points_per_centroid=x.shape[0], seed=0
        )
        model.train(x, init_centroids=initial_means)
        return len(model.iteration_stats), model.centroids.copy()

    return _time_fits(fit, iterations, repeats)


def _time_jax_iterations(step, state, z, iterations, repeats):
    """Compile `step` and time `iterations[1] - iterations[0]` calls after a warm-up call.

    Returns:
      Seconds per iteration (best of `repeats`), compile seconds and the compiled step.
    """
    import jax

    start = time.perf_counter()
    compiled = step.lower(state, z, COVARIANCE_REG).compile()
    compile_seconds = time.perf_counter() - start

    def run(n_iter):
        current = state
        for _ in range(n_iter):
            current = compiled(current, z, COVARIANCE_REG)
        return jax.block_until_ready(current)

    run(1)
    n_timed = iterations[1] - iterations[0]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(n_timed)
        best = min(best, time.perf_counter() - start)
    return best / n_timed, compile_seconds, compiled


def run_jax(algorithm, x, initial_means, iterations, repeats, threads=None):
    """Time the jitted dcan_jax iteration of `algorithm`.

    For k-means the timed iteration is `kmeans_step(..., update_variances=False)`,
    the means-only Lloyd iteration that scikit-learn and faiss run. The full
    `kmeans_step`, which also updates the variances, is timed after it and
    reported as `full_iteration_s`. `peak_rss_mb` is read before the full
    iteration runs, so it is the means-only iteration's peak.
    """
    if threads is not None:
        raise ValueError("--threads is not supported for jax; XLA uses every core.")
    import jax
    import jax.numpy as jnp

    from dcan_jax import cluster

    if algorithm == "kmeans":
        step = jax.jit(functools.partial(cluster.kmeans_step, update_variances=False))
    else:
        step = jax.jit(cluster.gmm_step)
    n_clusters = initial_means.shape[0]
    state = cluster.ClusterState(
        means=jnp.asarray(initial_means),
        variances=jnp.ones_like(initial_means),
        weights=jnp.full((n_clusters,), 1.0 / n_clusters, jnp.float32),
    )
    z = jax.device_put(x)
    iteration_seconds, compile_seconds, compiled = _time_jax_iterations(
        step, state, z, iterations, repeats
    )
    # Means after each of the B iterations, to compare with fits of any length.
    means_by_iteration, current = [], state
    for _ in range(iterations[1]):
        current = compiled(current, z, COVARIANCE_REG)
        means_by_iteration.append(np.asarray(current.means, np.float64).tolist())
    result = {
        "profile_s": None,
        "seconds": [None, iteration_seconds * (iterations[1] - iterations[0])],
        "n_iter": [None, iterations[1] - iterations[0]],
        "iteration_s": iteration_seconds,
        "compile_s": compile_seconds,
        "means": np.asarray(current.means),
        "means_by_iteration": means_by_iteration,
        "peak_rss_mb": peak_rss_mb(),
    }
    if algorithm == "kmeans":
        full_seconds, full_compile_seconds, full_step = _time_jax_iterations(
            jax.jit(cluster.kmeans_step), state, z, iterations, repeats
        )
        full = state
        for _ in range(iterations[1]):
            full = full_step(full, z, COVARIANCE_REG)
        result["full_iteration_s"] = full_seconds
        result["full_compile_s"] = full_compile_seconds
        result["full_peak_rss_mb"] = peak_rss_mb()
        result["full_means_max_difference"] = float(
            np.max(np.abs(np.asarray(full.means) - np.asarray(current.means)))
        )
        result["profile_s"] = profile_kmeans_step(z, state, repeats + 1)
    return result


def profile_kmeans_step(z, state, repeats: int) -> dict[str, float]:
    """Time the parts of one jitted k-means iteration, each as its own program.

    The parts are the means-only iteration's distances and assignment (with
    the product `z @ means.T` on its own), its M-step product `one_hot.T @ z`,
    the same sums as a segment sum for comparison, and the product
    `one_hot.T @ z**2` that only the full iteration computes.
    """
    import jax
    import jax.numpy as jnp

    from dcan_jax import cluster

    n_clusters = state.means.shape[0]
    assignments = jnp.argmin(cluster.squared_distances(z, state.means), axis=1)
    one_hot = jax.nn.one_hot(assignments, n_clusters, dtype=z.dtype)
    parts = {
        "distances_and_argmin": (
            lambda z, means: jnp.argmin(cluster.squared_distances(z, means), axis=1),
            (z, state.means),
        ),
        "z_times_means_transposed": (lambda z, means: z @ means.T, (z, state.means)),
        "one_hot_times_z": (lambda one_hot, z: one_hot.T @ z, (one_hot, z)),
        "segment_sum_of_z": (
            lambda labels, z: jax.ops.segment_sum(z, labels, n_clusters),
            (assignments, z),
        ),
        "one_hot_times_z_squared": (lambda one_hot, z: one_hot.T @ z**2, (one_hot, z)),
    }
    seconds = {}
    for name, (function, args) in parts.items():
        program = jax.jit(function).lower(*args).compile()
        jax.block_until_ready(program(*args))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(program(*args))
            best = min(best, time.perf_counter() - start)
        seconds[name] = best
    return seconds


RUNNERS = {"jax": run_jax, "sklearn": run_sklearn, "faiss": run_faiss}
IMPORTS = {"jax": ("jax", "dcan_jax.cluster"), "sklearn": ("sklearn.cluster", "sklearn.mixture")}


def import_library(library: str) -> None:
    """Import the modules of `library`, so the memory they take is not counted in a case."""
    for module in IMPORTS.get(library, (library,)):
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument("--algorithm", choices=ALGORITHMS, required=True)
    parser.add_argument("--n-samples", type=int, required=True, help="rows of the data")
    parser.add_argument("--n-features", type=int, required=True, help="columns of the data")
    parser.add_argument("--n-clusters", type=int, default=10, help="number of clusters")
    parser.add_argument(
        "--iterations",
        type=int,
        nargs=2,
        default=(1, 6),
        metavar=("A", "B"),
        help="iteration counts of the two timed fits; the per-iteration time is their difference",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs per fit; the best counts"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads of sklearn or faiss; default all cores"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and initial means")
    args = parser.parse_args(argv)
    if not 0 < args.iterations[0] < args.iterations[1]:
        parser.error(f"--iterations {args.iterations} should satisfy 0 < A < B.")

    import_library(args.library)
    x, initial_means = make_data(args.n_samples, args.n_features, args.n_clusters, args.seed)
    rss_before = peak_rss_mb()
    run = RUNNERS[args.library]
    result = run(args.algorithm, x, initial_means, args.iterations, args.repeats, args.threads)
    means = np.asarray(result.pop("means"), np.float64)
    record = {
        "library": args.library,
        "algorithm": args.algorithm,
        "n_samples": args.n_samples,
        "n_features": args.n_features,
        "n_clusters": args.n_clusters,
        "iterations": list(args.iterations),
        "threads": args.threads,
        **result,
        "data_mb": x.nbytes / 2**20,
        "rss_after_data_mb": rss_before,
        # The jax runner reads its peak itself, before its second variant runs.
        "peak_rss_mb": result.get("peak_rss_mb", peak_rss_mb()),
        # Means after the longer fit, to check that the libraries did the same work.
        "final_means": means.tolist(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
