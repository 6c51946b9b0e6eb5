"""`sidbench` with a checkpoint write that takes $SLOW_SAVE_S seconds longer, noting in $EVENTS_FILE when the write
ended and when each process exits: lets tests/test_preemption.py see whether any process of a stopped torchrun
run exits before the checkpoint is on disk."""
import atexit
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from distill import checkpoint  # noqa: E402
from sidbench.cli.app import main  # noqa: E402

_real_save = checkpoint.save


def note(event: str) -> None:
    with open(os.environ["EVENTS_FILE"], "a") as f:
        f.write(f"{event} {os.environ.get('RANK', '0')} {time.time():.6f}\n")


def slow_save(*args, **kwargs):
    time.sleep(float(os.environ["SLOW_SAVE_S"]))
    path = _real_save(*args, **kwargs)
    note("saved")
    return path


checkpoint.save = slow_save
atexit.register(note, "exit")

if __name__ == "__main__":
    main()
