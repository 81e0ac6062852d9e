"""Builds snnkern._C: the C++ CPU kernels always, the CUDA kernels when torch is a CUDA build
and nvcc is found.

Environment switches:
  SNNKERN_CUDA=1      require the CUDA kernels (fail if torch has no CUDA or nvcc is missing;
                      honours TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0", for machines without a GPU)
  SNNKERN_CUDA=0      build the CPU kernels only
  SNNKERN_CPU_ISA     "avx2" or "generic"; default: avx2 when the build machine has it
Build against the torch you run with: pip install --no-build-isolation -e .
"""
import glob
import os
import platform

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    switch = os.environ.get("SNNKERN_CUDA", "").strip().lower()
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if switch in ("1", "true", "on", "yes"):
        if not available:
            raise RuntimeError(
                f"SNNKERN_CUDA=1 but CUDA kernels cannot be built: torch {torch.__version__} "
                f"(CUDA {torch.version.cuda}), CUDA_HOME={CUDA_HOME}. Install a CUDA build of torch and nvcc.")
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
        return " avx2" in flags and " fma" in flags
    except OSError:
        return False


def cpu_flags() -> list:
    # No FMA contraction: the kernels then round exactly as torch's eager ops do, so spikes
    # match the reference bit for bit.
    flags = ["-O3", "-std=c++20", "-ffp-contract=off"]
    isa = os.environ.get("SNNKERN_CPU_ISA", "avx2" if cpu_has_avx2() else "generic")
    if isa == "avx2":
        # ATen's AVX2 vectors (with its SLEEF exp) for the SIMD lanes of the CPU kernels.
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    elif isa != "generic":
        raise RuntimeError(f"SNNKERN_CPU_ISA must be 'avx2' or 'generic', got {isa!r}")
    return flags


def openmp_flags() -> list:
    # at::parallel_for is a header template: without -fopenmp its `#pragma omp parallel` is
    # dropped and the CPU kernels run on one thread. Use OpenMP when torch itself does.
    if "parallel backend: OpenMP" in torch.__config__.parallel_info() and platform.system() != "Darwin":
        return ["-fopenmp"]
    return []


def extension():
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    args = {"cxx": cpu_flags() + openmp_flags()}
    if want_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        args["cxx"].append("-DSNNKERN_WITH_CUDA")
        args["nvcc"] = ["-O3", "-std=c++20", "--fmad=false", "-DSNNKERN_WITH_CUDA"]
        return CUDAExtension("snnkern._C", sources, extra_compile_args=args, extra_link_args=openmp_flags())
    return CppExtension("snnkern._C", sources, extra_compile_args=args, extra_link_args=openmp_flags())


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
