"""Training alerts as pure logic over the loss curves: spikes, overfitting, early stopping, best step.

Kept free of torch and I/O so the rules can be tested on synthetic curves and their state saved in checkpoints.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field


@dataclass
class Event:
    step: int
    kind: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Monitor:
    spike_factor: float
    spike_window: int
    overfit_evals: int
    patience: int
    train_losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, val loss, mean train loss since the previous evaluation)."""
    best_step: int | None = None
    best_val: float | None = None
    overfit_reported: bool = False
    losses_at_last_eval: int = 0

    def on_train_loss(self, step: int, loss: float, learning_rate: float) -> list[Event]:
        """A spike is a loss above `spike_factor` times the mean of the previous `spike_window` losses."""
        window = self.train_losses[-self.spike_window :]
        self.train_losses.append(loss)
        if len(window) < self.spike_window:
            return []
        average = sum(window) / len(window)
        if loss > self.spike_factor * average:
            return [
                Event(
                    step,
                    "spike",
                    f"train loss {loss:.3f} at step {step} is {loss / average:.1f}x its moving average "
                    f"{average:.3f}; if this repeats, lower the learning rate (now {learning_rate:.2e}), "
                    f"e.g. to {learning_rate / 3:.1e}",
                )
            ]
        return []

    def on_eval(self, step: int, val_loss: float) -> tuple[list[Event], bool, bool]:
        """(events, is_new_best, should_stop) after an evaluation."""
        recent = self.train_losses[self.losses_at_last_eval :] or self.train_losses[-1:]
        self.losses_at_last_eval = len(self.train_losses)
        self.evals.append((step, val_loss, sum(recent) / len(recent) if recent else float("nan")))
        events: list[Event] = []
        is_best = self.best_val is None or val_loss < self.best_val
        if is_best:
            self.best_val, self.best_step = val_loss, step
            events.append(Event(step, "best", f"new best val loss {val_loss:.4f} at step {step}"))
        if self._overfitting() and not self.overfit_reported:
            self.overfit_reported = True
            n = self.overfit_evals
            events.append(
                Event(
                    step,
                    "overfit",
                    f"val loss rose for {n} evaluation(s) while train loss fell (best val {self.best_val:.4f} "
                    f"at step {self.best_step}); the best adapter is kept; consider fewer epochs or more data",
                )
            )
        evals_since_best = sum(1 for s, _, _ in self.evals if s > self.best_step)
        should_stop = evals_since_best >= self.patience
        if should_stop:
            events.append(
                Event(
                    step,
                    "early_stop",
                    f"no val improvement for {evals_since_best} evaluation(s); stopping, keeping step {self.best_step}",
                )
            )
        return events, is_best, should_stop

    def _overfitting(self) -> bool:
        last = self.evals[-(self.overfit_evals + 1) :]
        if len(last) < self.overfit_evals + 1:
            return False
        val_rising = all(b[1] > a[1] for a, b in itertools.pairwise(last))
        train_falling = all(b[2] < a[2] for a, b in itertools.pairwise(last))
        return val_rising and train_falling

    def state(self) -> dict:
        return asdict(self)
