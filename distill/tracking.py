"""Experiment trackers through accelerate's tracker interface (TensorBoard, W&B); the JSONL log is always written."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from distill.config import DistillConfig, tracker_names
from sidbench.core.errors import SidbenchError

log = logging.getLogger(__name__)

# tracker name -> (module it needs, pip package that provides it)
NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class Trackers:
    """Every configured tracker, started, fed the same scalars, and finished together.

    ``names``: the trackers running; ``skipped``: (name, reason) of each one asked for but not started, which the
    trainer reports on the console and in ``log.txt`` (nothing asked for is dropped silently).
    """

    def __init__(self, trackers: list, names: list[str] | None = None, skipped: list[tuple[str, str]] | None = None):
        self.trackers = trackers
        self.names = list(names or [])
        self.skipped = list(skipped or [])

    def notes(self) -> list[str]:
        """Human-readable lines: one per skipped tracker, then which trackers run."""
        out = [f"tracker {name} skipped: {why}; metrics are still in log.jsonl" for name, why in self.skipped]
        out.append("trackers: " + (", ".join(self.names) if self.names else "none") + " (log.jsonl is always written)")
        return out

    def log(self, values: dict, step: int) -> None:
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for t in self.trackers:
            t.log(scalars, step=step)

    def finish(self) -> None:
        for t in self.trackers:
            t.finish()


def _start(tracker):
    if hasattr(tracker, "start"):  # accelerate >= 1.2 opens writers/runs in start()
        tracker.start()
    return tracker


def open_trackers(cfg: DistillConfig, run: Path) -> Trackers:
    """Start the trackers named in ``cfg.trackers``.

    TensorBoard (the default) is skipped when tensorboard is not installed, and the skip is recorded in the
    returned ``Trackers.skipped`` for the trainer to report; a tracker the user asked for explicitly by another
    name (W&B) must be installed, else a clear error before any training.
    """
    from accelerate import PartialState
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    if tracker_names(cfg.trackers):
        PartialState()  # accelerate's trackers log through its logger, which needs the state (joins our process group)
    out, names, skipped = [], [], []
    for name in tracker_names(cfg.trackers):
        module, package = NEEDS[name]
        if importlib.util.find_spec(module) is None:
            if name == "tensorboard":
                why = f"the {package} package is not installed (pip install {package})"
                log.debug("tracker %s skipped: %s", name, why)
                skipped.append((name, why))
                continue
            raise SidbenchError(f"tracker {name!r} needs the {package} package (pip install {package}), "
                                f"or drop it from --trackers (now {cfg.trackers!r})")
        if name == "tensorboard":
            out.append(_start(TensorBoardTracker(cfg.tracker_project, str(run / "tensorboard"))))
        else:
            t = _start(WandBTracker(cfg.tracker_project, name=run.name, dir=str(run), config=cfg.to_dict()))
            out.append(t)
        names.append(name)
    return Trackers(out, names, skipped)
