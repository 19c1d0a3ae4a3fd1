"""Training progress: a tqdm bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import tqdm

logger = logging.getLogger("dcan_jax")


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressReporter:
    """Shows DCAN steps done, step rate and ETA.

    On a terminal (`stream.isatty()`) it draws a tqdm bar with the latest losses;
    otherwise, e.g. when stderr goes to a file, it logs one INFO line per update to
    the "dcan_jax" logger.

    Args:
      total_steps: steps of the whole run.
      initial_step: steps already done, e.g. when resuming.
      stream: where the bar is drawn; defaults to `sys.stderr`.
    """

    def __init__(self, total_steps: int, initial_step: int = 0, stream: TextIO | None = None):
        self.total_steps = total_steps
        self.initial_step = initial_step
        self._first_update: tuple[float, int] | None = None
        stream = stream if stream is not None else sys.stderr
        self._bar = None
        if hasattr(stream, "isatty") and stream.isatty():
            self._bar = tqdm.tqdm(
                total=total_steps,
                initial=initial_step,
                unit="step",
                file=stream,
                dynamic_ncols=True,
            )

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Report that `step` steps are done; `metrics` are the latest scalar values."""
        summary = {
            "d_loss": metrics.get("discriminator_loss"),
            "e_loss": metrics.get("encoder_loss"),
            "recon": metrics.get("reconstruction_loss"),
            "min_frac": metrics.get("min_cluster_fraction"),
        }
        summary = {name: value for name, value in summary.items() if value is not None}
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix({name: f"{value:.3g}" for name, value in summary.items()})
            return
        now = time.perf_counter()
        # The first update also paid for compilation, so the rate is measured from it.
        if self._first_update is None:
            self._first_update = (now, step)
        since, since_step = self._first_update
        rate = (step - since_step) / (now - since) if now > since else 0.0
        rate_text = f"{rate:.1f} steps/s" if rate > 0 else "rate unknown"
        eta_text = _format_seconds((self.total_steps - step) / rate) if rate > 0 else "unknown"
        values = "  ".join(f"{name} {value:.4g}" for name, value in summary.items())
        logger.info(
            "step %d/%d  %s  ETA %s  %s", step, self.total_steps, rate_text, eta_text, values
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
