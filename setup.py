"""Builds snnkern._C: the C++ CPU kernels always, the CUDA kernels when torch is a CUDA build
and nvcc is found.

Environment switches:
  SNNKERN_CUDA=1      require the CUDA kernels (fail if torch has no CUDA or nvcc is missing;
                      honours TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0", for machines without a GPU)
  SNNKERN_CUDA=0      build the CPU kernels only
  SNNKERN_CPU_ISA     "avx2" or "generic"; default: avx2 when the build machine has it
  TORCH_CUDA_ARCH_LIST  the GPU architectures, e.g. "8.0;9.0"; default: the GPUs present or, where
                      none is visible (CI runners, login nodes, container builds), DEFAULT_CUDA_ARCHS
  CUDA_HOME           the CUDA toolkit; default: found from nvcc's real location (nvcc on the PATH
                      may be a wrapper script outside the toolkit)
Build against the torch you run with: pip install --no-build-isolation -e .
The build prints one line saying what it builds; snnkern.build_info() returns it at run time.
"""

import glob
import os
import platform
import re
import shutil
import subprocess

import torch
from setuptools import setup

# Ampere and Hopper as machine code, and PTX that newer GPUs compile when they load it.
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def find_cuda_home():
    """The CUDA toolkit folder, or None when there is no nvcc.

    torch guesses it as two levels above the nvcc on the PATH, which is wrong where that nvcc is
    a wrapper script outside the toolkit (the link then fails with `cannot find -lcudart`); nvcc
    itself knows where it lives (`_HERE_` in its --dryrun output)."""
    given = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if given:
        return given
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        return None
    try:
        dry = subprocess.run(
            [nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
        here = re.search(r"^#\$ _HERE_=(.*)$", dry.stdout + dry.stderr, re.MULTILINE)
    except (OSError, subprocess.SubprocessError):
        here = None
    home = os.path.dirname(here.group(1).strip()) if here else os.path.dirname(os.path.dirname(nvcc))
    if not os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
        raise RuntimeError(
            f"found nvcc at {nvcc} but no CUDA toolkit around it (looked in {home}); "
            "set CUDA_HOME to the toolkit folder (the one with bin/nvcc and include/)"
        )
    return home


_cuda_home = find_cuda_home()
if _cuda_home is not None:
    os.environ["CUDA_HOME"] = _cuda_home  # read by torch.utils.cpp_extension at import

from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def want_cuda() -> bool:
    switch = os.environ.get("SNNKERN_CUDA", "").strip().lower()
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if switch in ("1", "true", "on", "yes"):
        if not available:
            raise RuntimeError(
                f"SNNKERN_CUDA=1 but CUDA kernels cannot be built: torch {torch.__version__} "
                f"(CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}. Install a CUDA build of torch and nvcc."
            )
        return True
    if switch in ("0", "false", "off", "no"):
        return False
    return available


def cpu_has_avx2() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return all(f" {flag}" in flags for flag in ("avx2", "fma", "f16c"))
    except OSError:
        return False


def cpu_flags() -> list:
    # No FMA contraction: the kernels then round exactly as torch's eager ops do, so spikes
    # match the reference bit for bit.
    # -g0: python's default flags add debug info, which makes the build a third slower.
    flags = ["-O3", "-g0", "-std=c++20", "-ffp-contract=off", "-Wno-unknown-pragmas"]  # torch headers: #pragma unroll
    isa = os.environ.get("SNNKERN_CPU_ISA", "avx2" if cpu_has_avx2() else "generic")
    if isa == "avx2":
        # ATen's AVX2 vectors (with its SLEEF exp) for the SIMD lanes of the CPU kernels; F16C for
        # c10::Half's conversions, which the emulated CUDA lanes use.
        flags += ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    elif isa != "generic":
        raise RuntimeError(f"SNNKERN_CPU_ISA must be 'avx2' or 'generic', got {isa!r}")
    return flags


def openmp_flags() -> list:
    # at::parallel_for is a header template: without -fopenmp its `#pragma omp parallel` is
    # dropped and the CPU kernels run on one thread. Use OpenMP when torch itself does.
    if "parallel backend: OpenMP" in torch.__config__.parallel_info() and platform.system() != "Darwin":
        return ["-fopenmp"]
    return []


def cuda_archs() -> str:
    """TORCH_CUDA_ARCH_LIST as given; else torch's choice for the GPUs present; else the default set
    (torch's own detection fails with an IndexError where no GPU is visible)."""
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and torch.cuda.device_count() == 0:
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    return ";".join(
        sorted({"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())})
    )


# The flags of the CUDA sources beyond those torch's extension builder adds (tools/
# check_cuda_compile.py compiles with the same). No FMA contraction, as on the CPU.
NVCC_FLAGS = ["-O3", "-std=c++20", "--fmad=false", "-DSNNKERN_WITH_CUDA"]


def cuda_sources() -> list:
    """The CUDA backend: its kernel (.cu, nvcc) and its host side (.cpp, the C++ compiler)."""
    return sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))


def extension(cuda=None):
    """The extension to build; `cuda`: force the CUDA sources in or out (default: want_cuda())."""
    cuda = want_cuda() if cuda is None else cuda
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cxx = cpu_flags() + openmp_flags()
    isa = next((f[len("-DCPU_CAPABILITY=") :].lower() for f in cxx if f.startswith("-DCPU_CAPABILITY=")), "generic")
    info = f"cpu={isa},openmp={'on' if openmp_flags() else 'off'}"
    if cuda:
        archs = cuda_archs()
        info += f",cuda={archs.replace(';', '/').replace(' ', '/')}"
    print(f"snnkern: building {info.replace(',', ', ')}", flush=True)
    # The build line reaches the library as a macro argument (no quotes: they would need escaping
    # in the ninja file); ops.cpp turns it into a string.
    cxx += [f"-DSNNKERN_BUILD_INFO={info}"]
    if cuda:
        sources += cuda_sources()
        cxx.append("-DSNNKERN_WITH_CUDA")
        return CUDAExtension(
            "snnkern._C", sources, extra_compile_args={"cxx": cxx, "nvcc": NVCC_FLAGS}, extra_link_args=openmp_flags()
        )
    return CppExtension("snnkern._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=openmp_flags())


if __name__ == "__main__":  # pip runs it so; tools/check_cuda_compile.py imports it for extension()
    setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension})
