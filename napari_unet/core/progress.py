"""Progress events and the generators that yield them.

Long work in the core (inference, training, evaluation) is a generator that yields
:class:`Progress` events and returns its result. The CLI drives one with
:func:`run_with_callback` and a progress bar; the GUI hands it to napari's
``thread_worker``; :func:`drain` just runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Progress:
    """A progress event: ``done`` of ``total`` units (slices) finished."""

    done: int
    total: int
    message: str = ""


class Cancelled(RuntimeError):
    """Raised when a caller's ``should_stop`` asked inference to stop."""


def drain(generator: Generator[Progress, None, np.ndarray]) -> np.ndarray:
    """Run a progress generator to completion and return its value."""
    return run_with_callback(generator)


def run_with_callback(
    generator: Generator[Progress, None, np.ndarray] | Iterator,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Drive a progress generator, calling ``progress`` on each event."""
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)
        if should_stop is not None and should_stop():
            generator.close()
            raise Cancelled("Stopped at the caller's request")
