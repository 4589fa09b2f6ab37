"""A pytest plugin that collects the way launch_testing's plugin does, for test/test_suite_collects.py.

With ROS sourced, pytest loads launch_testing's plugin, whose ``pytest_pycollect_makemodule`` imports
every test module while the *directory* is being collected (to look for ``generate_test_description``).
An exception raised by that import, a ``Skipped`` from a module-level ``pytest.importorskip`` among
them, then ends the collection of the whole directory. launch_testing is not on PyPI, so this plugin
reproduces just that hook; ``VA_HIDE_MODULES`` (comma-separated) makes chosen modules unimportable,
as they are on a machine without them.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

HIDDEN = {m for m in os.environ.get("VA_HIDE_MODULES", "").split(",") if m}


# None in sys.modules: ``import`` raises ImportError and ``importlib.util.find_spec`` answers None,
# exactly as on a machine where the package is not installed.
for _name in HIDDEN:
    sys.modules[_name] = None  # type: ignore[assignment]


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> None:
    """Import the module as launch_testing's hook does (its directory on sys.path), then let pytest go on."""
    if module_path.name == "__init__.py":
        return None
    directory = str(module_path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.import_module(module_path.stem)
    return None
