"""Compiles the CUDA backend of snnkern (csrc/cuda: the kernel with nvcc, its host side with the
C++ compiler) without a GPU and without a CUDA build of torch, with the very flags torch's
extension builder passes: the extension comes from setup.py's extension(), and
torch.utils.cpp_extension.BuildExtension writes and runs the ninja build of its objects (in
parallel, MAX_JOBS jobs); only the link is skipped.

    python tools/check_cuda_compile.py [ARCH ...]      # default: 8.0 9.0
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(archs: list[str]) -> int:
    os.chdir(ROOT)
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    build = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="snnkern_setup")  # sets CUDA_HOME
    if os.environ.get("CUDA_HOME") is None:
        print("nvcc not found: set CUDA_HOME to the CUDA toolkit")
        return 1
    import torch
    import torch.utils.cpp_extension as builder
    from setuptools import Distribution

    cpu_torch = torch.version.cuda is None
    if cpu_torch:  # a CPU wheel's builder does not look for CUDA at all
        builder.CUDA_HOME = os.environ["CUDA_HOME"]
    ext = build["extension"](cuda=True)
    ext.sources = build["cuda_sources"]()

    class CompileOnly(builder.BuildExtension):
        def build_extension(self, ext):
            self.compiler.compile(
                ext.sources,
                output_dir=self.build_temp,
                include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args,
                depends=ext.depends,
            )

    with tempfile.TemporaryDirectory() as tmp:
        if cpu_torch:  # it ships the c10/cuda headers but not this one, which CUDA builds generate
            os.makedirs(os.path.join(tmp, "inc", "c10", "cuda", "impl"))
            with open(os.path.join(tmp, "inc", "c10", "cuda", "impl", "cuda_cmake_macros.h"), "w") as f:
                f.write("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
            ext.include_dirs.append(os.path.join(tmp, "inc"))
        dist = Distribution(
            {"name": "snnkern-cuda-compile-check", "ext_modules": [ext], "cmdclass": {"build_ext": CompileOnly}}
        )
        cmd = dist.get_command_obj("build_ext")
        cmd.build_temp, cmd.build_lib = os.path.join(tmp, "obj"), os.path.join(tmp, "lib")
        start = time.perf_counter()
        cmd.ensure_finalized()
        cmd.run()
        print(
            f"CUDA sources compile for sm {' '.join(archs)}: {len(ext.sources)} files in "
            f"{time.perf_counter() - start:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["8.0", "9.0"]))
