"""What a training run will cost, told while it is still cheap to stop: one progress bar over
every step of every epoch (so tqdm's ETA is the whole run's, not the epoch's) and, after its
first few steps, one line with the expected time of the whole training at this machine's
measured speed."""
from __future__ import annotations

import statistics
import time

from tqdm import tqdm

UNTIMED_STEPS = 1  # the first step builds the kernels and warms the caches: slower than the rest
TIMED_STEPS = 3  # steps measured before the estimate is printed (their median: one slow step is not the speed)


def duration(seconds: float) -> str:
    """'1 h 5 min', '14 min 3 s' or '42 s'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


class RunClock:
    """The run's bar and estimate. `done_epochs` of `epochs` are finished already (a resumed run)."""

    def __init__(self, epochs: int, steps_per_epoch: int, done_epochs: int = 0, show: bool = True) -> None:
        self.epochs, self.total = epochs, epochs * steps_per_epoch
        self.done = done_epochs * steps_per_epoch
        self.show = show
        self.bar = tqdm(total=self.total, initial=self.done, desc="training", unit="step", dynamic_ncols=True,
                        disable=None if show else True)
        self.step_seconds: list[float] = []
        self.estimate: float | None = None  # seconds for every step of the run, once measured
        self._last = time.perf_counter()

    def start_epoch(self, epoch: int) -> None:
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
        if self.estimate is None and len(self.step_seconds) == UNTIMED_STEPS + TIMED_STEPS:
            per_step = statistics.median(self.step_seconds[UNTIMED_STEPS:])
            self.estimate = per_step * self.total
            left = per_step * (self.total - self.done)
            if self.show:
                measured = f"steps {UNTIMED_STEPS + 1}-{len(self.step_seconds)}"
                tqdm.write(f"expected training time: about {duration(self.estimate)} for {self.total:,} steps at "
                           f"{per_step:.2f} s each (measured here over {measured}); {duration(left)} left")

    def close(self) -> None:
        self.bar.close()
