"""The learning rate at each step, and the step a run ends at.

Without a time budget a run takes `train.epochs` epochs: a linear warmup over
`train.warmup_epochs`, then the schedule (constant, cosine or step). With
`train.time_limit_minutes`, the run is planned in steps that fit the budget at the pace measured
so far (over the run's first `PACE_STEPS` steps after the first, then at each epoch's end, its
validations included), and the schedule is laid over the planned steps: the warmup keeps its
steps but takes at most `MAX_WARMUP_SHARE` of them, a cosine comes down to its last, small but
non-zero value at the planned last step, a step schedule's drops come at the same shares of the
run as over the nominal epochs, and the run ends at that step, inside an epoch if need be. No step
is ever taken at a learning rate of 0, and the budget is overshot by the last validation and the
error of the pace, not by an epoch.
"""

import math

from sr_core.config import TrainConfig

PACE_STEPS = 10  # steps timed at the start of a budgeted run, after its first, which pays one-off costs
MAX_WARMUP_SHARE = 0.25  # of a budget's planned steps: a longer warmup would leave little time to learn


class Schedule:
    """The planned steps of a run and the learning-rate multiplier at each of them."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, budget: float = 0.0) -> None:
        self.cfg, self.steps_per_epoch, self.budget = cfg, steps_per_epoch, budget
        self.nominal_steps = cfg.epochs * steps_per_epoch
        self.total_steps = self.nominal_steps  # until a budgeted run has measured its pace

    def plan(self, seconds: float, steps: int, pace: float = 0.0, at_least: int = 0) -> None:
        """With a budget: the run ends when it is spent, `seconds` of it gone on `steps` steps and
        each next step taking `pace` seconds (0: the average so far), after `at_least` more steps
        (a resumed run, whose last epoch found time for more). Without a budget, nothing changes."""
        if self.budget and steps:
            left = int((self.budget - seconds) / (pace or seconds / steps))
            self.total_steps = min(self.nominal_steps, steps + max(left, at_least))

    def ends_before(self, step: int) -> bool:
        """Whether the run is over before `step` (counted from 0)."""
        return step >= self.total_steps

    @property
    def warmup_steps(self) -> int:
        warmup = self.cfg.warmup_epochs * self.steps_per_epoch
        return min(warmup, int(MAX_WARMUP_SHARE * self.total_steps)) if self.budget else warmup

    def learning_rate_factor(self, step: int) -> float:
        """Multiplier of the base learning rate at `step`, one of the planned steps."""
        cfg, warmup, total = self.cfg, self.warmup_steps, self.total_steps
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)  # < 1 at every planned step
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "step":
            nominal_step = step * self.nominal_steps // total
            return cfg.step_gamma ** (nominal_step // (cfg.step_epochs * self.steps_per_epoch))
        return 1.0
