"""Our top-level ``kernels`` package shares its import name with Hugging Face's ``kernels``,
which transformers probes. Guard that transformers still imports and does not take ours for it."""

import importlib.metadata as md
import subprocess
import sys


def test_transformers_does_not_mistake_our_kernels_package():
    code = (
        "import kernels, transformers\n"
        "from transformers.utils import import_utils as iu\n"
        "assert 'stockray' in kernels.__doc__ or 'Indicator' in kernels.__doc__\n"
        "f = getattr(iu, 'is_kernels_available', None)\n"
        "print(f() if f else 'absent')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("False", "absent")


def test_stockray_version_outside_the_probed_window():
    major, minor, *_ = (int(x) for x in md.version("stockray").split("."))
    assert not ((major, minor) >= (0, 18) and (major, minor) <= (0, 19))
