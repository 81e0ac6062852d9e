"""What the built extension holds, beyond what the kernels compute.

The neuron arithmetic of csrc/lif.h is forced inline into every kernel (SNN_HD). A copy of it
left out of line would be a weak symbol emitted by several translation units, of which the
linker keeps one for all: the scan's hot loop once ran the copy compiled for the recurrent row
tasks, with its neuron state in memory, 3x slower and with the same results. No functional test
sees that, so this one looks at the symbols.
"""

import re
import shutil
import subprocess

import pytest

import snnkern

NEURON_FUNCTIONS = re.compile(
    r"snnkern::(Replay|LifStep|ResetRule|lif_forward_steps|lif_backward_steps|surrogate_grad|lane_step)\b"
)


def test_neuron_arithmetic_has_no_out_of_line_copy():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    symbols = subprocess.run(
        [nm, "-C", "--defined-only", snnkern._C.__file__], capture_output=True, text=True, check=True
    ).stdout
    if not symbols.strip():
        pytest.skip("the extension has no symbol table (stripped)")
    assert "snnkern::" in symbols  # the table is readable and names the project's code
    copies = sorted({line.split(" ", 2)[-1] for line in symbols.splitlines() if NEURON_FUNCTIONS.search(line)})
    assert not copies, "out-of-line copies of csrc/lif.h functions:\n" + "\n".join(copies[:10])
