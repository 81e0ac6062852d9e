"""The errors of a training run: each names what is wrong and carries the command's exit code.

``python -m snnkern train`` prints the message of a :class:`TrainError` (no traceback) and exits
with its ``exit_code``:

====  ========================================================================================
code  meaning
====  ========================================================================================
0     the run finished (metrics.json written)
1     the run failed: unreadable or invalid data file or checkpoint, non-finite loss/gradient
2     the command is wrong: an option outside its range, a run folder that needs ``--resume``
      or ``--overwrite``, ``--resume`` with options that differ from the checkpoint's
130   stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM (128 + the signal number): a checkpoint
      was written; the same command with ``--resume`` continues the run exactly
====  ========================================================================================

Every error is also an instance of the built-in exception a caller of the Python API would
expect (``ValueError``, ``FileNotFoundError``, ...). They take one message argument, so they
pickle (a distributed run sends rank 0's error to the other ranks).
"""

from __future__ import annotations

import signal


class TrainError(Exception):
    """An error of a training run that the command line reports without a traceback."""

    exit_code = 1
    # the same error is raised on every rank of a distributed run: only rank 0 prints it
    collective = True


class ConfigError(TrainError, ValueError):
    """An option outside its allowed range, or options that do not fit together."""

    exit_code = 2


class RunFolderError(TrainError, FileExistsError):
    """The output folder holds another run (or is in use) and neither --resume nor --overwrite says what to do."""

    exit_code = 2


class ResumeError(ConfigError):
    """``--resume`` that cannot continue the run: no checkpoint, or options that differ from it."""


class CheckpointNotFoundError(ResumeError, FileNotFoundError):
    """``--resume`` without a checkpoint in the output folder."""


class CheckpointError(TrainError, ValueError):
    """A checkpoint file that cannot be read or does not fit the model (the message names the file)."""


class DataError(TrainError, ValueError):
    """A data file with invalid contents (the message names the file and the problem)."""


class DataFileNotFoundError(TrainError, FileNotFoundError):
    """A data file that does not exist."""


class NonFiniteLossError(TrainError, FloatingPointError):
    """The loss (or a gradient) of a training step is NaN or infinite; training stopped before the update."""


class Preempted(TrainError):
    """SIGTERM or SIGINT stopped the run after the current step; a checkpoint was written."""

    exit_code = 128 + int(signal.SIGTERM)

    @classmethod
    def by(cls, signum: int, message: str) -> Preempted:
        error = cls(message)
        error.exit_code = 128 + int(signum)
        return error
