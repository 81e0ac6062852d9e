"""Distributed training with 2 CPU processes (gloo): the processes get the environment torchrun gives
its workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and run the command line's
``main``, as ``torchrun --nproc_per_node 2 -m snnkern train ...`` does.

Shown: the same loss trajectory and weights as one process at the same global batch (to float
tolerance), a SIGTERM to one rank stops both at the same step with a checkpoint, --resume continues
under DDP, only rank 0 writes files, and the kernels' gradients are right under DDP with gradient
bucketing, ``no_sync`` and ``find_unused_parameters=False``."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from snnkern.models import IPDSNN, SHDRecurrentSNN
from snnkern.train import TrainConfig, train

WORLD = 2
IPD_TINY = dict(batch_size=8, train_batches=3, test_batches=1, hidden=6, anf_per_ear=8)
SHD_TINY = dict(batch_size=8, hidden=6, nb_steps=12, shd_train_samples=24, shd_test_samples=10)


def _flags(options):
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _forbidden(*args, **kwargs):
    raise AssertionError(f"rank {os.environ['RANK']} wrote a file")


def _no_sync_check(rank):
    """Max relative |DDP gradient - one-process gradient| for 2 micro-batches per rank, the first under no_sync."""
    diffs = {}
    for name, make in (
        ("ipd", lambda: IPDSNN(10, 7, 4, tau=20e-3)),
        ("shd", lambda: SHDRecurrentSNN(12, 7, 4, tau_mem=10e-3, tau_syn=5e-3)),
    ):
        torch.manual_seed(0)
        ref = make()
        model = make()
        model.load_state_dict(ref.state_dict())
        # a tiny bucket cap: one bucket per parameter, all-reduced as each gradient is ready
        ddp = DistributedDataParallel(model, bucket_cap_mb=1e-6, find_unused_parameters=False)
        gen = torch.Generator().manual_seed(1)
        x = (torch.rand(WORLD, 2, 3, 15, ref.hidden.linear.in_features, generator=gen) < 0.3).float()

        def loss_of(net, batch):
            out = net(batch)
            out = out[0] if isinstance(out, tuple) else out
            return (out**2).mean()

        with ddp.no_sync():
            loss_of(ddp, x[rank, 0]).backward()
        loss_of(ddp, x[rank, 1]).backward()
        total = sum(loss_of(ref, x[r, m]) for r in range(WORLD) for m in range(2)) / WORLD
        total.backward()
        pairs = list(zip(model.parameters(), ref.parameters(), strict=True))
        # relative to the largest gradient entry of each parameter
        diffs[name] = max(((p.grad - q.grad).abs().max() / q.grad.abs().max()).item() for p, q in pairs)
        diffs[name + "_grad_norm"] = min(q.grad.norm().item() for q in ref.parameters())
    return diffs


def _worker(rank, folder, ports):
    import snnkern.plots
    import snnkern.train.loop as loop
    from snnkern.__main__ import main

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1")
    if rank != 0:  # only rank 0 writes checkpoints, metrics and plots
        loop.save_checkpoint = loop.write_json = snnkern.plots.training_figures = _forbidden
    codes = []
    ipd = ["train", "ipd-dales", "--epochs=3", f"--out={folder}/ipd", "--no-progress", "--no-plots", *_flags(IPD_TINY)]
    # SIGTERM to rank 1 only, in global step 4 (epoch 2, step 2 of 3): both ranks stop after that step
    os.environ.update(MASTER_PORT=str(ports[0]), SNNKERN_TEST_SIGNAL_AT_STEP="4:1")
    codes.append(main(ipd))
    del os.environ["SNNKERN_TEST_SIGNAL_AT_STEP"]
    os.environ["MASTER_PORT"] = str(ports[1])
    codes.append(main([*ipd, "--resume"]))
    os.environ["MASTER_PORT"] = str(ports[2])
    codes.append(main(["train", "shd", "--epochs=2", f"--out={folder}/shd", "--no-progress", *_flags(SHD_TINY)]))
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    try:
        no_sync = _no_sync_check(rank)
    finally:
        dist.destroy_process_group()
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump(dict(codes=codes, no_sync=no_sync), f)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(folder, _free_ports(3)), nprocs=WORLD, join=True)
    ranks = []
    for r in range(WORLD):
        with open(f"{folder}/rank{r}.json") as f:
            ranks.append(json.load(f))
    return folder, ranks


def _ckpt(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


def _same_trajectory(a, b):
    torch.testing.assert_close(
        torch.tensor(a["history"]["step_loss"]), torch.tensor(b["history"]["step_loss"]), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(torch.tensor(a["history"]["train_loss"]), torch.tensor(b["history"]["train_loss"]))
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)


def test_ddp_preempt_resume_matches_one_process(ddp_runs, tmp_path, capfd):
    folder, ranks = ddp_runs
    # both ranks: stopped by the signal (128 + SIGTERM), then finished
    assert [r["codes"][:2] for r in ranks] == [[143, 0], [143, 0]]
    one = str(tmp_path / "one")
    train(TrainConfig(model="ipd-dales", epochs=3, out=one, plots=False, progress=False, **IPD_TINY))
    a, b = _ckpt(one), _ckpt(f"{folder}/ipd")
    assert b["world_size"] == 2 and (b["epoch"], b["step"]) == (3, 0)
    assert len(b["history"]["step_loss"]) == len(a["history"]["step_loss"]) == 9
    _same_trajectory(a, b)
    torch.testing.assert_close(torch.tensor(a["history"]["val_loss"]), torch.tensor(b["history"]["val_loss"]))
    with open(f"{folder}/ipd/metrics.json") as f:
        m = json.load(f)
    assert m["world_size"] == 2 and m["global_batch_size"] == 8 and m["status"] == "finished"
    assert sorted(os.listdir(f"{folder}/ipd")) == [".snnkern-run.lock", "checkpoint.pt", "metrics.json"]


def test_ddp_shd_matches_one_process(ddp_runs, tmp_path):
    folder, ranks = ddp_runs
    assert [r["codes"][2] for r in ranks] == [0, 0]
    one = str(tmp_path / "one")
    train(TrainConfig(model="shd", epochs=2, out=one, plots=False, progress=False, **SHD_TINY))
    a, b = _ckpt(one), _ckpt(f"{folder}/shd")
    _same_trajectory(a, b)
    assert a["data"] == b["data"]  # rank 0 generated and sent the same data
    with open(f"{folder}/shd/metrics.json") as f:
        m = json.load(f)
    with open(f"{one}/metrics.json") as f:
        m1 = json.load(f)
    assert m["world_size"] == 2 and m["test_accuracy"] == m1["test_accuracy"]
    assert os.path.exists(f"{folder}/shd/loss.png")  # plots: written once, by rank 0


def test_kernels_under_ddp_no_sync_and_buckets(ddp_runs):
    _, ranks = ddp_runs
    for r in ranks:
        for name in ("ipd", "shd"):
            assert r["no_sync"][name + "_grad_norm"] > 0
            assert r["no_sync"][name] < 1e-5, (name, r["no_sync"])
