"""Fakes of the speech engines that subclass the real interfaces, for tests that are not about a model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def energy_scorer(threshold_dbfs: float = -35.0) -> Callable[[np.ndarray], float]:
    """A crude loudness scorer for tests of the state machine (not for production)."""

    def score(frame: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)) + 1e-12)
        return 1.0 if 20 * np.log10(rms) > threshold_dbfs else 0.0

    return score
