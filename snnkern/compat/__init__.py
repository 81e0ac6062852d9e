"""Layers that take a peer library's constructor arguments and layouts and compute its neuron
with snnkern's fused kernels: ``snnkern.compat.snntorch``, ``.spikingjelly``, ``.norse`` and
``.sinabs``. Each module imports its peer only when it is used, and only the peer's own package
(which the user has, since the model came from it).

:func:`convert` swaps the peer neuron modules inside an existing model for these layers,
keeping their parameters and buffers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

PEERS = ("snntorch", "spikingjelly", "norse", "sinabs")

Converter = Callable[[nn.Module], nn.Module]


def converters(peers: tuple[str, ...] = PEERS) -> dict[type, Converter]:
    """The converters of the given peers that are installed: {peer class: function building the
    snnkern layer from an instance}."""
    table: dict[type, Converter] = {}
    for peer in peers:
        try:
            importlib.import_module(peer)
        except ImportError:
            continue
        table.update(importlib.import_module(f"{__name__}.{peer}").converters())
    return table


def convert(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace every peer neuron module inside ``model`` (snnTorch, SpikingJelly, Norse, Sinabs)
    with its snnkern equivalent, keeping parameters, buffers and training mode.

    A module that is itself a peer neuron is converted and returned. Options a snnkern layer
    cannot express raise an error that names them; nothing is replaced silently by a different
    neuron. With ``inplace=False`` (the default) ``model`` is left untouched and a converted
    copy is returned.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be a torch.nn.Module, got {type(model).__name__}")
    # Only the peers whose modules the model holds (importing a peer takes seconds).
    present = {type(m).__module__.partition(".")[0] for m in model.modules()}
    table = converters(tuple(peer for peer in PEERS if peer in present))
    if not inplace:
        import copy

        model = copy.deepcopy(model)

    def swap(module: nn.Module) -> nn.Module:
        make = table.get(type(module))
        if make is None:
            return module
        new = make(module)
        new.train(module.training)
        return new

    root = swap(model)
    if root is not model:
        return root
    for name, child in list(model.named_children()):
        converted = convert(child, inplace=True)
        if converted is not child:
            setattr(model, name, converted)
    return model


__all__ = ["PEERS", "convert", "converters"]
