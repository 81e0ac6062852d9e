"""Training of the seed models: ``python -m snnkern train MODEL`` (see :mod:`snnkern.__main__`).

Needs the ``train`` extra (``pip install "snnkern[train]"``: tqdm, matplotlib, h5py). The seed
labels (000, 001, 003, 004) name the tutorials listed in :mod:`snnkern.seed_loops`.

Models and their defaults (the seeds' hyperparameters):

* ``ipd``          seed 000: 100 hidden LIF, tau 20 ms, Adam lr 0.01, batch 64, 64 training and
                   32 test batches, 10 epochs, log-softmax + NLL on the time-mean of the readout.
* ``ipd-membrane`` seed 000's membrane-only baseline (same settings, no hidden layer).
* ``ipd-dales``    seed 001: 30 hidden, tau 5 ms, Dale's law (ie_ratio 0.5), lr 0.005, phase-noise
                   offsets re-drawn every epoch, a validation set as large as the training set,
                   early stopping on the validation loss (patience 10) keeping the best weights,
                   at most 150 epochs.
* ``shd``          seed 004: 128 recurrent hidden two-state LIF, tau_mem 10 ms, tau_syn 5 ms, Adam
                   lr 2e-4, batch 256, nb_steps 100, max_time 1.0 s, cross-entropy on the max over
                   time of the readout, 200 epochs.
* ``evidence``     seed 003 (NEST's e-prop example): evidence accumulation with 50 regular and 50
                   adaptive (ALIF) recurrent neurons and two leaky readouts, trained with
                   ``--rule eprop`` (the seed's, :mod:`snnkern.eprop`; default) or ``--rule bptt``;
                   Adam lr 5e-3, batch 32, cross-entropy over the recall window plus the
                   firing-rate regularisation (``--c-reg`` 1, ``--f-target`` 0.01 per step = 10 Hz).
                   No fixed data set: every iteration trains on fresh trials, an epoch is
                   ``--iterations`` (25) iterations, 20 epochs; ``recall_error`` in metrics.json is
                   the fraction of wrong decisions on a fixed validation set.

Reproducibility: the data come from a ``torch.Generator`` seeded with ``--seed``; each epoch's
shuffling and noise offset come from a generator seeded with (seed, epoch) (the evidence task's
trials of each iteration from one seeded with (seed, iteration)), so an interrupted
run continued with ``--resume`` from its checkpoint (written every epoch, and mid-epoch when
SIGTERM/SIGINT stops the run) gives bitwise the weights of an uninterrupted one. The checkpoint
also stores the global RNG states.

Modules: :mod:`.config` (options, defaults and their checks), :mod:`.errors` (the errors the
command line reports, with their exit codes), :mod:`.tasks` (data, model and loss of each model),
:mod:`.checkpoints`, :mod:`.loop` (the training loop and the run-folder rules),
:mod:`.preemption` (SIGTERM/SIGINT), :mod:`.distributed` (torchrun and
DistributedDataParallel), :mod:`.sweep` (envelope-power sweep).
"""

from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .config import CHANGEABLE_ON_RESUME, DEFAULTS, MODELS, TrainConfig
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteLossError,
    Preempted,
    ResumeError,
    RunFolderError,
    TrainError,
)
from .loop import train
from .sweep import sweep_envelope_power
from .tasks import EvidenceTask, IPDTask, SHDTask, make_task

__all__ = [
    "MODELS",
    "DEFAULTS",
    "TrainConfig",
    "IPDTask",
    "SHDTask",
    "EvidenceTask",
    "make_task",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "CHANGEABLE_ON_RESUME",
    "TrainError",
    "ConfigError",
    "RunFolderError",
    "ResumeError",
    "CheckpointError",
    "DataError",
    "NonFiniteLossError",
    "Preempted",
    "train",
    "sweep_envelope_power",
]
