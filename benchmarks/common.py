"""Timing helpers and a description of the machine a benchmark ran on."""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax

REPOSITORY = Path(__file__).resolve().parent.parent


def best_time(run: Callable[[], Any], repeats: int) -> float:
    """Return the shortest wall time of `repeats` calls of `run`, in seconds.

    `run` must block until its work is done (e.g. end in `jax.block_until_ready`).
    The minimum is the estimate least affected by other processes on a shared
    machine, as `timeit` recommends.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    """Call `run` once and return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def call_blocking(program: Callable, *args) -> Any:
    """Call `program` and wait until its results are computed."""
    return jax.block_until_ready(program(*args))


def blocking_seconds(program: Callable, *args) -> float:
    """Return the wall seconds of one call of `program`, waiting for its results."""
    return timed(functools.partial(call_blocking, program, *args))[1]


def timed_compile(jitted, *args, **kwargs):
    """Lower and compile `jitted` for `args`, and return the executable and seconds taken."""
    return timed(lambda: jitted.lower(*args, **kwargs).compile())


def load_average() -> tuple[float, float, float]:
    """Return the 1, 5 and 15 minute load averages of the machine."""
    return tuple(round(value, 2) for value in os.getloadavg())


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    """Return the installed version of distribution `name`, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """Describe the machine and the software versions of this process."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": package_version("jaxlib"),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "numpy": package_version("numpy"),
        "scikit-learn": package_version("scikit-learn"),
        "faiss-cpu": package_version("faiss-cpu"),
        "load_average_start": load_average(),
    }
