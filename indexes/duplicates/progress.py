"""Progress of a long run, stage by stage: tqdm bars on stderr for the CLI, a callback for
anything else (the page's "find duplicates" shows the same stages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

# (stage, done, total): called when a stage starts (done 0) and as its work is done. It may
# raise to stop the run: the work saved so far is kept, and the next run goes on from it.
ProgressFn = Callable[[str, int, int], None]


def as_progress(progress: "bool | ProgressFn | Progress | None") -> "Progress":
    """A Progress from what callers pass: bars (True), a callback, one already made, or
    nothing (False, None)."""
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return Progress(callback=progress)
    return Progress(bars=progress is True)


class Progress:
    """Reports each stage of a run to tqdm bars (``bars``) and to ``callback``; silent
    without either."""

    def __init__(self, bars: bool = False, callback: ProgressFn | None = None) -> None:
        self.bars, self.callback = bars, callback

    @contextmanager
    def stage(self, name: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
        """A stage of ``total`` units; yields ``advance(n)``, to call as n more are done."""
        bar = tqdm(total=total, desc=name, unit=unit, disable=not self.bars, leave=False,
                   dynamic_ncols=True)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)
            if self.callback is not None:
                self.callback(name, done, total)

        if self.callback is not None:
            self.callback(name, 0, total)
        try:
            yield advance
        finally:
            bar.close()
