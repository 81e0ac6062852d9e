"""Data sets: the IPD sound-localisation task (seeds 000/001) and Spiking Heidelberg Digits (seed 004).

The seed labels name the tutorials listed in :mod:`snnkern.seed_loops`.
"""

from .evidence import EvidenceBatch, EvidenceConfig
from .ipd import IPDConfig, IPDDataset, continuise, discretise
from .shd import SHDData, dense_batch, generate_shd_folder, load_shd, shd_batches, write_shd_file

__all__ = [
    "IPDConfig",
    "IPDDataset",
    "discretise",
    "continuise",
    "SHDData",
    "load_shd",
    "dense_batch",
    "shd_batches",
    "write_shd_file",
    "generate_shd_folder",
    "EvidenceConfig",
    "EvidenceBatch",
]
