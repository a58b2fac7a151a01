"""What a training run will cost, told while it is still cheap to stop: one progress bar over
every step of every epoch (so tqdm's ETA is the whole run's, not the epoch's) and, after its
first few steps, one line with the expected time of the whole training at this machine's
measured speed."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from tqdm import tqdm

UNTIMED_STEPS = 1  # the first step builds the kernels and warms the caches: slower than the rest
TIMED_STEPS = 3  # steps measured before the estimate is printed (their median: one slow step is not the speed)


def duration(seconds: float) -> str:
    """'1 h 5 min', '14 min 3 s' or '42 s'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


class RunClock:
    """The run's bar and estimate. `done_epochs` of `epochs` are finished already (a resumed run).
    `epoch_cost(epoch)` is an epoch's cost relative to the others (its pixels per image: a
    train.low_res epoch at 24 px costs (24/32)^2 of one at 32): the estimate prices the epochs
    not yet measured by it, and is revised once steps of another cost have been timed."""

    def __init__(self, epochs: int, steps_per_epoch: int, done_epochs: int = 0, show: bool = True,
                 epoch_cost: Callable[[int], float] = lambda epoch: 1.0) -> None:
        self.epochs, self.steps_per_epoch, self.total = epochs, steps_per_epoch, epochs * steps_per_epoch
        self.done = done_epochs * steps_per_epoch
        self.show, self.epoch_cost = show, epoch_cost
        self.bar = tqdm(total=self.total, initial=self.done, desc="training", unit="step", dynamic_ncols=True,
                        disable=None if show else True)
        self.step_seconds: list[float] = []  # steps of the current cost since it began
        self.priced: set[float] = set()  # costs whose steps have given an estimate
        self.estimate: float | None = None  # seconds for every step of the run: the first estimate
        self.epoch = done_epochs + 1
        self._last = time.perf_counter()

    def start_epoch(self, epoch: int) -> None:
        if self.epoch_cost(epoch) != self.epoch_cost(self.epoch):
            self.step_seconds = []
        self.epoch = epoch
        self.bar.set_description(f"training, epoch {epoch}/{self.epochs}")
        self._last = time.perf_counter()

    def step_done(self, **postfix: str) -> None:
        now = time.perf_counter()
        self.step_seconds.append(now - self._last)
        self._last = now
        self.done += 1
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        cost = self.epoch_cost(self.epoch)
        if cost not in self.priced and len(self.step_seconds) == UNTIMED_STEPS + TIMED_STEPS:
            self.priced.add(cost)
            self._tell(statistics.median(self.step_seconds[UNTIMED_STEPS:]) / cost)

    def _tell(self, unit_seconds: float) -> None:
        """Print the whole run's expected time at `unit_seconds` per step of cost 1."""
        steps = self.steps_per_epoch
        whole = unit_seconds * steps * sum(self.epoch_cost(epoch) for epoch in range(1, self.epochs + 1))
        left = unit_seconds * (sum(self.epoch_cost(epoch) for epoch in range(self.epoch, self.epochs + 1)) * steps
                               - self.epoch_cost(self.epoch) * (self.done - (self.epoch - 1) * steps))
        first = self.estimate is None
        self.estimate = whole if first else self.estimate
        if self.show:
            measured = f"steps {len(self.step_seconds) - TIMED_STEPS + 1}-{len(self.step_seconds)} of this epoch"
            tqdm.write(f"{'expected' if first else 'revised'} training time: about {duration(whole)} for "
                       f"{self.total:,} steps (measured here over {measured}); {duration(max(left, 0.0))} left")

    def close(self) -> None:
        self.bar.close()
