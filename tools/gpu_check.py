"""Helpers of tools/gpu_check.sh (see docs/gpu.md): the device slug, step records, the machine's
facts, SpikingJelly's native CUDA LIF op, test counts from the junit XML, and SUMMARY.md.

    python tools/gpu_check.py slug --device cuda
    python tools/gpu_check.py record --results DIR --step bench --rc 0 --seconds 312
    python tools/gpu_check.py build-info --results DIR --arch 9.0 --compiled True --build rebuilt
    python tools/gpu_check.py sj-native --sdist .gpu-wheels/spikingjelly-2.0.0.tar.gz --site DIR --build-dir DIR
    python tools/gpu_check.py junit --results DIR
    python tools/gpu_check.py summary --results DIR [--dry]

Only the standard library and torch at module level: the slug, record and summary commands work
before snnkern is built.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from device import device_name, device_slug  # noqa: E402  (benchmarks/device.py)

# The goals ("The CUDA path proven without a GPU").
SCAN_BANDWIDTH_MAX = 1.5  # fused scan fwd+bwd time / time to move its minimum bytes once
SJ_SPEEDUP_MIN = 1.5  # SpikingJelly's fastest GPU backend time / snnkern time, same shape and neuron
TRAIN_SPEEDUP_MIN = 20.0  # IPD and SHD training step: seed loop time / snnkern time, same GPU
BYTES_PER_ELEMENT = 6 * 4  # benchmarks/run.py bytes_moved: x, spikes, membrane (fwd); grad, membrane, grad_x (bwd)


def cmd_slug(args) -> int:
    print(device_slug(device_name(args.device), args.device))
    return 0


# --------------------------------------------------------------------------------------------
# Small JSON files in the results folder
# --------------------------------------------------------------------------------------------


def load(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cmd_record(args) -> int:
    path = Path(args.results) / "steps.json"
    steps = load(path) or {}
    steps[args.step] = {
        "rc": args.rc,
        "seconds": args.seconds,
        "finished": now(),
        "timed_out": args.rc in (124, 137),
        **({"note": args.note} if args.note else {}),
    }
    save(path, steps)
    return 0


# --------------------------------------------------------------------------------------------
# Machine facts and the build's outcome
# --------------------------------------------------------------------------------------------


def run_text(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def peer_versions() -> dict[str, str | None]:
    """Versions of the peers that import here (None: absent or broken)."""
    from importlib import metadata

    out = {}
    for name in ("spikingjelly", "snntorch", "norse", "nir", "nirtorch", "loguru", "cupy", "triton"):
        try:
            module = __import__(name)
        except Exception:  # noqa: BLE001 - absent or broken: not available
            out[name] = None
            continue
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = "installed"
        out[name] = str(version)
    return out


def sj_providers() -> dict[str, str]:
    """Which of SpikingJelly's LIF CUDA providers can run here (through benchmarks/impls.py)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    try:
        from impls import Skip, _sj_bind_provider
    except Exception as error:  # noqa: BLE001
        return {"error": f"benchmarks/impls.py not importable: {error}"}
    out = {}
    for provider in ("auto", "cuda", "triton"):
        try:
            out[provider] = "available: " + _sj_bind_provider(provider, torch.device("cuda"))
        except Skip as why:
            out[provider] = f"unavailable: {why}"
        except Exception as error:  # noqa: BLE001
            out[provider] = f"unavailable: {type(error).__name__}: {error}"
    with contextlib.suppress(Exception):  # leave SpikingJelly on its own choice
        _sj_bind_provider("auto", torch.device("cuda"))
    return out


def cmd_build_info(args) -> int:
    import torch

    info = {
        "date": now(),
        "dry": args.dry,
        "build": args.build,
        "arch": args.arch,
        "compiled_with_cuda": args.compiled,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "nvcc": next(
            (ln.strip() for ln in run_text(["nvcc", "--version"]).splitlines() if "release" in ln), "nvcc not found"
        ),
        "git_commit": run_text(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or "unknown (no .git in this copy)",
        "peers": peer_versions(),
    }
    smi = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"])
    if smi:
        parts = [p.strip() for p in smi.splitlines()[0].split(",")]
        info.update(gpu=parts[0], driver=parts[1], gpu_memory=parts[2], compute_capability=parts[3])
    elif torch.cuda.is_available():
        info.update(
            gpu=torch.cuda.get_device_name(0), compute_capability="{}.{}".format(*torch.cuda.get_device_capability(0))
        )
    try:
        import snnkern

        info["snnkern"] = snnkern.__version__
        info["snnkern_compiled_with_cuda"] = bool(snnkern.compiled_with_cuda())
    except Exception as error:  # noqa: BLE001
        info["snnkern"] = f"not importable: {type(error).__name__}: {error}"
    sj_native = load(Path(args.results) / "sj_native.json")
    if sj_native:
        info["sj_native"] = sj_native
    if not args.dry:
        info["sj_providers"] = sj_providers()
    save(Path(args.results) / "build.json", info)
    print(json.dumps(info, indent=1))
    return 0


# --------------------------------------------------------------------------------------------
# SpikingJelly 2's native CUDA LIF op (its fastest GPU backend), built from the sdist
# --------------------------------------------------------------------------------------------

SJ_SOURCES = (
    "ops/__init__.py",
    "ops/_cuda.cuh",
    "ops/cuda_surrogate.cuh",
    "ops/native_layout.cuh",
    "ops/lif/kernels.cuh",
    "ops/lif/native.cu",
)


def cmd_sj_native(args) -> int:
    """SpikingJelly's PyPI wheel has only its Triton and torch providers; its setup.py builds the native
    CUDA ops (all 12 of them) with SJ_BUILD_NATIVE_CUDA=1. This builds the LIF one alone, with the
    flags SpikingJelly's setup.py gives it, and installs it where SpikingJelly looks for it
    (spikingjelly/_ops/lif/_C*.so beside _native_build.json)."""
    import torch
    from torch.utils import cpp_extension

    record = Path(args.results) / "sj_native.json" if args.results else None
    pkg = Path(args.site) / "spikingjelly" / "_ops" / "lif"
    target, meta = pkg / "_C.so", pkg / "_native_build.json"

    def done(status: str, **extra) -> int:
        print(f"SpikingJelly native LIF: {status}")
        if record:
            save(record, {"status": status, **extra})
        return 0 if status in ("built", "already built") else 1

    if not torch.cuda.is_available() or torch.version.cuda is None:
        return done("skipped: needs a CUDA build of torch and a GPU")
    if not pkg.is_dir():
        return done(f"skipped: the spikingjelly wheel is not installed in {args.site}")
    old = load(meta)
    if target.exists() and old and old.get("torch_version") == str(torch.__version__) and not args.force:
        return done("already built", **old)
    build = Path(args.build_dir).resolve()
    src = build / "src"
    with tarfile.open(args.sdist) as tar:
        wanted = {}
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if rel in SJ_SOURCES and member.isfile():
                wanted[rel] = member
        missing = [s for s in SJ_SOURCES if s not in wanted]
        if missing:
            return done(f"failed: {args.sdist} lacks {missing}")
        for rel, member in wanted.items():
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()
            if not dest.exists() or dest.read_bytes() != data:  # unchanged files keep their mtime (ninja)
                dest.write_bytes(data)
    abi = runpy.run_path(str(src / "ops" / "__init__.py")).get("_NATIVE_ABI")
    installed_abi = runpy.run_path(str(pkg.parent / "__init__.py")).get("_NATIVE_ABI")
    if abi != installed_abi:
        return done(f"failed: sdist operator ABI {abi} != installed wheel's {installed_abi}")
    if args.arch:
        os.environ["TORCH_CUDA_ARCH_LIST"] = args.arch
    os.environ.setdefault("MAX_JOBS", "16")
    try:
        arch_flags = cpp_extension._get_cuda_arch_flags()
    except Exception:  # noqa: BLE001 - private helper; the same flags by hand
        cc = (args.arch or "{}.{}".format(*torch.cuda.get_device_capability())).replace(".", "")
        arch_flags = [f"-gencode=arch=compute_{cc},code=sm_{cc}"]
    (build / "obj").mkdir(parents=True, exist_ok=True)
    try:
        lib = cpp_extension.load(
            name="sj_lif_native",
            sources=[str(src / "ops" / "lif" / "native.cu")],
            extra_cuda_cflags=["-O3", "--fmad=false"],
            build_directory=str(build / "obj"),
            is_python_module=False,
            verbose=True,
        )
    except Exception as error:  # noqa: BLE001
        return done(f"failed: {type(error).__name__}: {str(error)[-2000:]}")
    lib = lib if isinstance(lib, str) and os.path.exists(lib) else str(build / "obj" / "sj_lif_native.so")
    shutil.copy2(lib, target)
    info = {
        "torch_version": str(torch.__version__),
        "operator_abi": abi,
        "cuda_version": torch.version.cuda,
        "cuda_arch_flags": arch_flags,
        "torch_cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"),
    }
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return done("built", **info)


# --------------------------------------------------------------------------------------------
# Test counts from the junit XML, by where a test runs (cpu / emulated / cuda)
# --------------------------------------------------------------------------------------------

WHERES = ("cpu", "emulated", "cuda")


def where_of(name: str, classname: str) -> str:
    """The suite runs each test on "cpu", "emulated" (the CUDA lanes on the host) and "cuda": that
    word is one of the dash-separated parts of the test's parameter id."""
    m = re.search(r"\[(.*)\]$", name)
    tokens = set(re.split(r"[-\[\]]", m.group(1))) if m else set()
    for where in ("cuda", "emulated", "cpu"):
        if where in tokens:
            return where
    if classname.split(".")[-1] == "test_cuda_only":
        return "cuda"
    return "unlabelled"


def junit_counts(xml: Path) -> dict:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
    failures, skip_reasons = [], defaultdict(int)
    root = ET.parse(xml).getroot()
    seconds = sum(float(s.get("time", 0) or 0) for s in root.iter("testsuite"))
    for case in root.iter("testcase"):
        name, classname = case.get("name", ""), case.get("classname", "")
        where = where_of(name, classname)
        kids = {child.tag: child for child in case}
        if "failure" in kids or "error" in kids:
            tag = "failure" if "failure" in kids else "error"
            counts[where]["failed" if tag == "failure" else "error"] += 1
            message = (kids[tag].get("message") or "").strip().splitlines()
            failures.append(f"{classname}::{name}".strip(":") + (f": {message[0][:200]}" if message else ""))
        elif "skipped" in kids:
            counts[where]["skipped"] += 1
            skip_reasons[(kids["skipped"].get("message") or "")[:160]] += 1
        else:
            counts[where]["passed"] += 1
    total = {k: sum(c[k] for c in counts.values()) for k in ("passed", "failed", "error", "skipped")}
    top_skips = sorted(skip_reasons.items(), key=lambda kv: -kv[1])[:5]
    return {
        "by_where": dict(counts),
        "total": total,
        "failures": failures,
        "junit_seconds": seconds,
        "top_skip_reasons": [{"reason": r, "count": n} for r, n in top_skips],
    }


SUMMARY_LINE = re.compile(r"\b\d+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b.* in [\d.]+s")


def cmd_junit(args) -> int:
    """tests.json and tests.md from every pytest*.txt / pytest*.rc / junit*.xml in the results folder
    (one set per part: the test step can be split with GPU_CHECK_TEST_PART)."""
    res = Path(args.results)
    out: dict[str, object] = {"date": now(), "parts": {}}
    for txt in sorted(res.glob("pytest*.txt")):
        part = txt.stem[len("pytest") :].lstrip("-") or "all"
        lines = [ln.strip().strip("=").strip() for ln in txt.read_text(errors="replace").splitlines()]
        found = [ln for ln in lines if SUMMARY_LINE.search(ln)]
        rc_file = txt.with_suffix(".rc")
        rc = int(rc_file.read_text().strip()) if rc_file.exists() else None
        out["parts"][part] = {
            "rc": rc,
            "timed_out": rc in (124, 137),
            "summary_line": found[-1] if found else "(no pytest summary line: stopped early?)",
        }
    rcs = [p["rc"] for p in out["parts"].values() if p["rc"]]
    out["rc"] = rcs[0] if rcs else 0
    xmls = sorted(res.glob("junit*.xml"))
    merged: dict[str, object] = {}
    for xml in xmls:
        try:
            counts = junit_counts(xml)
        except ET.ParseError as error:
            out.setdefault("junit_error", f"{xml.name} unreadable: {error}")
            continue
        for where, c in counts["by_where"].items():
            acc = merged.setdefault("by_where", {}).setdefault(where, dict.fromkeys(c, 0))
            for k, v in c.items():
                acc[k] += v
        merged.setdefault("failures", []).extend(counts["failures"])
        merged["junit_seconds"] = merged.get("junit_seconds", 0.0) + counts["junit_seconds"]
        merged.setdefault("top_skip_reasons", []).extend(counts["top_skip_reasons"])
    if merged:
        merged["total"] = {
            k: sum(c[k] for c in merged["by_where"].values()) for k in ("passed", "failed", "error", "skipped")
        }
        out.update(merged)
    if not xmls:
        out["junit_error"] = "no junit XML (pytest was stopped before writing it)"
    save(res / "tests.json", out)
    (res / "tests.md").write_text(tests_markdown(out) + "\n")
    print(tests_markdown(out))
    return 0


def tests_markdown(t: dict) -> str:
    lines = []
    for part, p in (t.get("parts") or {}).items():
        lines.append(
            f"pytest{'' if part == 'all' else f' ({part})'}: {p['summary_line']} (exit code {p['rc']}"
            + (", stopped at the step's time limit" if p.get("timed_out") else "")
            + ")"
        )
    if "by_where" in t:
        lines += ["", "| where | passed | failed | errors | skipped |", "| --- | ---: | ---: | ---: | ---: |"]
        order = [w for w in WHERES if w in t["by_where"]] + sorted(set(t["by_where"]) - set(WHERES))
        for w in order + ["total"]:
            c = t["total"] if w == "total" else t["by_where"][w]
            lines.append(f"| {w} | {c['passed']} | {c['failed']} | {c['error']} | {c['skipped']} |")
    if t.get("junit_error"):
        lines.append(f"\n{t['junit_error']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# SUMMARY.md
# --------------------------------------------------------------------------------------------


def _ms(v) -> str:
    return "" if v is None else (f"{v:.3g} ms" if v < 100 else f"{v:.0f} ms")


def _x(v) -> str:
    return "" if v is None else f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def goal_rows(results: dict) -> list[list[str]]:
    """[goal, measured, verdict] for each of the issue's goals."""
    env, rows = results.get("environment", {}), results.get("rows", [])
    ok = {(r["case"], r["implementation"]): r for r in rows if r.get("status") == "ok"}
    cases: list[dict] = []
    for r in rows:
        if r["case"] not in [c["case"] for c in cases]:
            cases.append(r)
    scans = [c for c in cases if c["family"].startswith("scan")]
    out = []

    # 1. bandwidth: the largest scan shape (on a GPU the seed shapes are launch-bound)
    bw = env.get("bandwidth_gbs")
    big = max(scans, key=lambda c: c["size"], default=None)
    fused = ok.get((big["case"], "fused")) if big else None
    if fused and bw:
        nbytes = BYTES_PER_ELEMENT * big["size"]
        ideal_ms = nbytes / (bw * 1e9) * 1e3
        ratio = fused["total_ms"] / ideal_ms
        measured = (
            f"{big['case']}: fwd+bwd {_ms(fused['total_ms'])}; {nbytes / 1e9:.3g} GB "
            f"({BYTES_PER_ELEMENT} B x {big['size']:,} elements) at {bw:.0f} GB/s "
            f"({env.get('bandwidth_source', '?')}) take {_ms(ideal_ms)}: **{ratio:.2f}x** that time"
        )
        copy = env.get("measured_copy_gbs")
        if copy:
            measured += (
                f" ({fused['total_ms'] / (nbytes / (copy * 1e9) * 1e3):.2f}x at the measured copy's {copy:.0f} GB/s)"
            )
        out.append(
            [
                f"scan fwd+bwd within {SCAN_BANDWIDTH_MAX}x of moving its bytes once",
                measured,
                verdict(ratio <= SCAN_BANDWIDTH_MAX),
            ]
        )
    else:
        out.append(
            [
                f"scan fwd+bwd within {SCAN_BANDWIDTH_MAX}x of moving its bytes once",
                "no fused scan row" if not fused else "bandwidth unknown (--bandwidth-gbs)",
                verdict(None),
            ]
        )

    # 2. SpikingJelly's fastest backend, per scan shape; snnkern configured as SpikingJelly's neuron
    parts, met = [], []
    for c in scans:
        sj = [r for (case, impl), r in ok.items() if case == c["case"] and impl.startswith("spikingjelly")]
        ours = ok.get((c["case"], "fused@sj"))
        if not sj or not ours:
            continue
        best = min(sj, key=lambda r: r["total_ms"])
        ratio = best["total_ms"] / ours["total_ms"]
        met.append(ratio >= SJ_SPEEDUP_MIN)
        parts.append(
            f"{c['shape']}: {best['implementation']} {_ms(best['total_ms'])}, snnkern "
            f"{_ms(ours['total_ms'])}: **{ratio:.2f}x**"
        )
    out.append(
        [
            f">= {SJ_SPEEDUP_MIN}x faster than SpikingJelly's fastest GPU backend (scan, same shape; "
            "snnkern as its neuron, fused@sj)",
            "; ".join(parts) or "no SpikingJelly rows (not installed?)",
            verdict(all(met) if met else None),
        ]
    )

    # 3. training steps against the seed loops
    for model, label in (("ipd", "IPD"), ("shd", "SHD")):
        case = next((c["case"] for c in cases if c["case"].startswith(f"train {model} ")), None)
        f, n = ok.get((case, "fused")), ok.get((case, "naive"))
        if f and n:
            s = n["total_ms"] / f["total_ms"]
            out.append(
                [
                    f"{label} training step >= {TRAIN_SPEEDUP_MIN:.0f}x faster than the seed loop",
                    f"{case}: seed loop {_ms(n['total_ms'])}, snnkern {_ms(f['total_ms'])}: **{s:.1f}x**",
                    verdict(s >= TRAIN_SPEEDUP_MIN),
                ]
            )
        else:
            out.append(
                [
                    f"{label} training step >= {TRAIN_SPEEDUP_MIN:.0f}x faster than the seed loop",
                    f"{case or 'no such case'}: fused or naive row missing",
                    verdict(None),
                ]
            )
    return out


def _vs(ok: dict, fused: dict, impl: str) -> str:
    """The fastest ``impl`` row of fused's case over fused (a trailing * matches a prefix)."""
    times = [
        x["total_ms"]
        for (case, name), x in ok.items()
        if case == fused["case"] and (name.startswith(impl[:-1]) if impl.endswith("*") else name == impl)
    ]
    return _x(min(times) / fused["total_ms"]) if times else ""


def case_table(results: dict) -> list[str]:
    rows = results.get("rows", [])
    ok = {(r["case"], r["implementation"]): r for r in rows if r.get("status") == "ok"}
    lines = [
        "| case | fused | vs naive | vs torch.compile | vs best SpikingJelly | vs snnTorch | GB/s (% peak) | agrees |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    seen = []
    for r in rows:
        if r["case"] in seen:
            continue
        seen.append(r["case"])
        f = ok.get((r["case"], "fused"))
        if not f:
            status = next(
                (x.get("status") for x in rows if (x["case"], x["implementation"]) == (r["case"], "fused")), None
            )
            lines.append(f"| {r['case']} | fused: {status or 'absent'} | | | | | | |")
            continue
        gbs = ""
        if "achieved_gbs" in f:
            gbs = f"{f['achieved_gbs']:.0f}"
            if "bandwidth_fraction" in f:
                gbs += f" ({100 * f['bandwidth_fraction']:.0f}%)"
        ratios = [_vs(ok, f, name) for name in ("naive", "torch.compile", "spikingjelly*", "snntorch")]
        lines.append(
            f"| {r['case']} | {_ms(f['total_ms'])} | " + " | ".join(ratios) + f" | {gbs} | {f.get('agrees', '')} |"
        )
    return lines


def failures(
    steps: dict, build: dict | None, tests: dict | None, results: dict | None, epochs: dict | None
) -> list[str]:
    out = []
    for step, s in steps.items():
        if step == "summary":
            continue
        if s.get("rc"):
            out.append(
                f"step `{step}` exited {s['rc']}"
                + (" (stopped at its time limit)" if s.get("timed_out") else "")
                + (f": {s['note']}" if s.get("note") else "")
            )
    for step, data in (("build", build), ("test", tests), ("bench", results), ("epochs", epochs)):
        if data is None and not any(k.split("-")[0] == step for k in steps):
            out.append(f"step `{step}` has not run (no output in the results folder)")
    if build and not build.get("dry") and build.get("compiled_with_cuda") != "True":
        out.append(f"the build did not give a CUDA extension (compiled_with_cuda: {build.get('compiled_with_cuda')})")
    if (
        build
        and isinstance(build.get("sj_native"), dict)
        and not str(build["sj_native"].get("status", "")).endswith("built")
    ):
        out.append(f"SpikingJelly's native CUDA LIF not built: {str(build['sj_native'].get('status'))[:300]}")
    if tests:
        if tests.get("junit_error"):
            out.append(tests["junit_error"])
        fails = tests.get("failures", [])
        for name in fails[:15]:
            out.append(f"test failed: `{name}`")
        if len(fails) > 15:
            out.append(f"... and {len(fails) - 15} more failed tests (tests.json)")
    if results:
        if results.get("environment", {}).get("interrupted"):
            out.append(f"bench: {results['environment']['interrupted']}")
        for r in results.get("rows", []):
            if r.get("status") == "error":
                out.append(f"bench error: {r['case']} / {r['implementation']}: {str(r.get('reason'))[:200]}")
            elif r.get("agrees") == "NO":
                out.append(
                    f"bench disagreement: {r['case']} / {r['implementation']} (spike mismatch "
                    f"{r.get('spike_mismatch')}, grad rel err {r.get('grad_rel_err')})"
                )
            elif r.get("status") == "skipped" and (
                "budget" in str(r.get("reason")) or "unavailable" in str(r.get("reason"))
            ):
                out.append(f"bench skipped: {r['case']} / {r['implementation']}: {str(r.get('reason'))[:160]}")
    if epochs and epochs.get("environment", {}).get("interrupted"):
        out.append(f"epochs: {epochs['environment']['interrupted']}")
    return out


def cmd_summary(args) -> int:
    res = Path(args.results)
    steps = load(res / "steps.json") or {}
    build, tests = load(res / "build.json"), load(res / "tests.json")
    results, epochs = load(res / "results.json"), load(res / "epochs.json")
    env = (results or {}).get("environment", {})
    b = build or {}
    title = b.get("gpu") or env.get("device") or res.name
    lines = [f"# GPU check: {title}", ""]
    if args.dry or b.get("dry"):
        lines += [
            "**DRY RUN** on the CPU (`GPU_CHECK_DRY=1`, `--quick` sizes): it checks the script's plumbing; "
            "the numbers and verdicts below mean nothing.",
            "",
        ]
    peers = ", ".join(f"{k} {v}" for k, v in (b.get("peers") or env.get("peers") or {}).items() if v) or "none"
    lines += [
        f"- summary written {now()}; results folder `{res.name}`; snnkern commit {b.get('git_commit', '?')}",
        f"- device: {title}"
        + (f", compute capability {b['compute_capability']}" if b.get("compute_capability") else "")
        + (f", {b['gpu_memory']}" if b.get("gpu_memory") else "")
        + (f", driver {b['driver']}" if b.get("driver") else ""),
        f"- torch {b.get('torch', env.get('torch', '?'))} (CUDA {b.get('torch_cuda', env.get('torch_cuda'))}), "
        f"{b.get('nvcc') or 'nvcc ?'}, python {b.get('python', env.get('python', '?'))}, "
        f"{b.get('cpu_count', '?')} cores",
        f"- build: {b.get('build', 'not run')}, arch {b.get('arch') or '-'}, compiled_with_cuda "
        f"{b.get('compiled_with_cuda', '?')}; peers: {peers}",
    ]
    if b.get("sj_providers"):
        lines.append(
            "- SpikingJelly LIF providers: " + "; ".join(f"{k}: {v[:80]}" for k, v in b["sj_providers"].items())
        )
    lines += ["", "| step | result | minutes |", "| --- | --- | ---: |"]
    names = [n for n in ("build", "test", "bench", "epochs") if not any(k.split("-")[0] == n for k in steps)]
    for step in list(steps) + names:
        s = steps.get(step)
        if not s:
            lines.append(f"| {step} | not run | |")
            continue
        result = "ok" if not s["rc"] else ("time limit" if s.get("timed_out") else f"exit {s['rc']}")
        lines.append(f"| {step} | {result} | {s['seconds'] / 60:.1f} |")

    lines += ["", "## Tests", ""]
    lines += [tests_markdown(tests)] if tests else ["not run"]

    lines += ["", "## Goals", ""]
    if results:
        lines += ["| goal | measured | verdict |", "| --- | --- | --- |"]
        lines += [f"| {g} | {m} | {v} |" for g, m, v in goal_rows(results)]
        lines += ["", "## Benchmarks (snnkern fused; ratios are the other's time over snnkern's)", ""]
        lines += case_table(results)
    else:
        lines.append("no results.json (bench not run)")
    if epochs and epochs.get("rows"):
        lines += [
            "",
            "Time per training epoch: "
            + "; ".join(
                f"{r['model']} {r['snnkern_s']:.3g} s vs seed loop {r['naive_s']:.3g} s ({_x(r['speedup'])})"
                for r in epochs["rows"]
            ),
        ]
    fails = failures(steps, build, tests, results, epochs)
    lines += ["", "## Failures", ""] + ([f"- {f}" for f in fails] or ["none"])
    text = "\n".join(lines) + "\n"
    (res / "SUMMARY.md").write_text(text)
    print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slug")
    s.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    s.set_defaults(fn=cmd_slug)
    s = sub.add_parser("record")
    s.add_argument("--results", required=True)
    s.add_argument("--step", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--note", default="")
    s.set_defaults(fn=cmd_record)
    s = sub.add_parser("build-info")
    s.add_argument("--results", required=True)
    s.add_argument("--arch", default="")
    s.add_argument("--compiled", default="")
    s.add_argument("--build", default="")
    s.add_argument("--dry", action="store_true")
    s.set_defaults(fn=cmd_build_info)
    s = sub.add_parser("sj-native")
    s.add_argument("--sdist", required=True)
    s.add_argument("--site", required=True)
    s.add_argument("--build-dir", required=True)
    s.add_argument("--arch", default="")
    s.add_argument("--results", default="")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_sj_native)
    s = sub.add_parser("junit")
    s.add_argument("--results", required=True)
    s.set_defaults(fn=cmd_junit)
    s = sub.add_parser("summary")
    s.add_argument("--results", required=True)
    s.add_argument("--dry", action="store_true")
    s.set_defaults(fn=cmd_summary)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
