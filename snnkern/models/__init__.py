"""Models of the seed tutorials, built on :mod:`snnkern.nn` layers.

* :class:`IPDMembraneOnly` - seed 000's non-spiking baseline.
* :class:`IPDSNN` - seed 000's one-hidden-layer SNN (also seed 001's network, with
  ``dale_ie_ratio`` for Dale's law; :func:`dales_ipd_snn` builds it with seed 001's settings).
* :class:`SHDRecurrentSNN` - seed 004's recurrent two-state SNN.
* :class:`EvidenceNetwork` - seed 003's recurrent network of regular and adaptive (ALIF) neurons
  for the evidence-accumulation task (its loss, regulariser and decisions are in
  :mod:`snnkern.models.evidence`).

The seed labels name the tutorials listed in :mod:`snnkern.seed_loops`.
"""

from .evidence import EvidenceNetwork
from .ipd import IPDSNN, IPDMembraneOnly, dales_ipd_snn
from .shd import SHDRecurrentSNN

__all__ = ["IPDMembraneOnly", "IPDSNN", "dales_ipd_snn", "SHDRecurrentSNN", "EvidenceNetwork"]
