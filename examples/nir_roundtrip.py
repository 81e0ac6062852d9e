"""Train the convolutional digits network, save it as a NIR file, and run the file in snnkern and in
the peers that import it: the same test accuracy everywhere.

The network and the training are those of ``examples/digits_conv.py`` (scikit-learn's 8x8 digits
coded as spike trains, ``TimeFolded`` convolutions and fused ``LIFNeuron`` layers), with one change:
NIR has no max pooling, so the pooling layer is ``nn.AvgPool2d(2)`` (NIR ``AvgPool2d``). Then:

1. :func:`snnkern.nir.write` saves the trained model to ``--out`` (a temporary file by default), with
   ``dt=1e-4`` and ``discretisation="euler"``: the time step and the reading of NIR's time
   constants that snnTorch and SpikingJelly import with (the neurons' decay ``1 - 1/tau`` becomes
   ``tau = 2e-4`` s and ``r = tau / dt = 2``, so that the input factor ``r dt / tau`` is 1).
2. :func:`snnkern.nir.load` reads the file back into snnkern layers: the same spikes, bit for bit,
   hence the same accuracy.
3. SpikingJelly's ``import_from_nir`` and snnTorch's ``import_from_nir`` build their own networks
   from the file; they run one time step per call, so the script loops over the steps. snnTorch 1.0
   imports NIR's ``Flatten(start_dim=0)`` (per sample) as ``nn.Flatten(0)``, which flattens the
   batch too; the script replaces that one module by ``nn.Flatten(1)`` and says so. Norse 1.1 reads
   no ``AvgPool2d`` (and ignores ``r``), so it is not among them.

    python examples/nir_roundtrip.py                 # 20 epochs: 96.7 % test accuracy in all four
    python examples/nir_roundtrip.py --quick         # CI smoke run (two epochs on a subset, < 30 s)

Needs ``nir`` (``pip install nir``), scikit-learn and tqdm; SpikingJelly and snnTorch where present.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import digits_conv as digits  # noqa: E402 - the example next to this one

from snnkern import nir as snir  # noqa: E402

DT = 1e-4  # seconds per step, as snnTorch and SpikingJelly import NIR
DEFAULT_OUT = os.path.join(tempfile.gettempdir(), "snnkern_digits.nir")
DISCRETISATION = "euler"


def nir_layers(channels: int) -> list[nn.Module | str]:
    """The digits network's layers with the max pooling replaced by average pooling (NIR has none)."""
    return [nn.AvgPool2d(2) if isinstance(m, nn.MaxPool2d) else m for m in digits.per_step_layers(channels)]


class Stepper(nn.Module):
    """Runs a peer's NIR import on ``[batch, time, ...]``: the imports are nirtorch graphs that take
    one time step and the state, ``net(x_t, state) -> (out, state)``, starting from ``state=None``.
    ``reset`` is called before every batch for networks that also keep a state inside (snnTorch's
    ``init_hidden`` neurons)."""

    def __init__(self, net: nn.Module, reset=None) -> None:
        super().__init__()
        self.net, self.reset = net, reset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reset is not None:
            self.reset(self.net)
        outs, state = [], None
        for t in range(x.shape[1]):
            out, state = self.net(x[:, t], state)
            outs.append(out[0] if isinstance(out, tuple) else out)
        return torch.stack(outs, 1)


def spikingjelly_model(path: str) -> nn.Module:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    return Stepper(import_from_nir(path, dt=DT))


def snntorch_model(path: str) -> nn.Module:
    import nir
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.Flatten) and module.start_dim == 0:
            print(f"  snnTorch: {name} = nn.Flatten(0, {module.end_dim}) would flatten the batch: using nn.Flatten(1)")
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, nn.Flatten(1, module.end_dim))
    return Stepper(net, reset=utils.reset)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=16, help="time steps per image")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the NIR file to write (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="smoke run (CI): two epochs on a subset, < 30 s")
    args = p.parse_args(argv)
    if args.quick:  # small, fast, and a high learning rate so that it learns something in two epochs
        args.epochs, args.channels, args.lr, args.steps = 2, 8, 1e-2, 8
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    x_train, y_train, x_test, y_test = digits.load_split()
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:768], y_train[:768], x_test[:160], y_test[:160]

    def test_data():
        return digits.batches(x_test, y_test, 256, args.steps, "rate", 10**6 + args.seed, False)

    # 1. train the snnkern network
    torch.manual_seed(args.seed)
    model = digits.build_snnkern(nir_layers(args.channels))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_batches = -(-len(y_train) // args.batch_size)
    for epoch in range(args.epochs):
        data = digits.batches(x_train, y_train, args.batch_size, args.steps, "rate", args.seed * 1000 + epoch, True)
        loss, seconds = digits.train_epoch(model, optimizer, data, n_batches, device, f"epoch {epoch + 1}")
        print(f"epoch {epoch + 1:3d}  loss {loss:.4f}  {seconds:.2f} s", flush=True)
    model.eval()

    # 2. write the NIR file and read it back
    sample = next(iter(test_data()))[0][:2]
    graph = snir.write(model, args.out, sample, dt=DT, discretisation=DISCRETISATION)
    nodes = ", ".join(f"{k}: {type(v).__name__}" for k, v in graph.nodes.items())
    print(f"\nwrote {args.out} (dt={DT}, {DISCRETISATION}): {nodes}")
    loaded = snir.load(args.out)
    with torch.no_grad():
        x = next(iter(test_data()))[0]
        same = torch.equal(loaded(x), model(x))
    verdict = "the same" if same else "DIFFERENT"
    print(f"snnkern.nir.load: {verdict} readout spikes as the trained model on a test batch")

    # 3. the peers
    results = {"snnkern (trained)": model, "snnkern (from the .nir file)": loaded}
    peers = {"SpikingJelly (import_from_nir)": spikingjelly_model, "snnTorch (import_from_nir)": snntorch_model}
    for name, build in peers.items():
        try:
            results[name] = build(args.out)
        except ImportError as error:
            print(f"  {name}: not installed ({error.name})")
        except Exception as error:  # noqa: BLE001 - a peer's importer failing is a result to print, not a crash
            print(f"  {name}: could not import the file: {type(error).__name__}: {error}")

    print(f"\ntest accuracy ({len(y_test)} digits, {args.steps} steps):")
    for name, net in results.items():
        t0 = time.perf_counter()
        try:
            acc = digits.accuracy(net, test_data(), device)
        except Exception as error:  # noqa: BLE001 - reported, the other networks still run
            print(f"  {name:<32} failed: {type(error).__name__}: {error}")
            continue
        print(f"  {name:<32} {100 * acc:6.2f} %   ({time.perf_counter() - t0:.2f} s)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
