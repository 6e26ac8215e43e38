"""Guest tests run only inside the qemu VM, where tools/vm/stage2.sh sets WREN_IN_VM=1.

Named explicitly on the host (`pytest tests/vm/guest/...`), they are skipped with the way to
run them, instead of failing on a kernel without IPIP.
"""

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("WREN_IN_VM") == "1":
        return
    skip = pytest.mark.skip(reason="runs only inside the qemu VM: make test-vm")
    for item in items:
        if item.path.resolve().is_relative_to(HERE):  # this hook sees the whole session
            item.add_marker(skip)
