"""The name of the device a benchmark runs on, and the folder name of its results
(benchmarks/results/<slug>/). Needs neither snnkern nor, for the CPU, torch: tools/gpu_check.py
uses it before anything is built."""

from __future__ import annotations

import platform
import re


def device_name(device_type: str) -> str:
    if device_type == "cuda":
        import torch

        return torch.cuda.get_device_name(torch.cuda.current_device())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_slug(name: str, device_type: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    slug = re.sub(r"-(cpu|processor)(-|$)", r"\2", slug)
    return (f"cpu-{slug}" if device_type == "cpu" else f"cuda-{slug}")[:60].strip("-")
