"""Find ``runner.reporters`` and ``runner.schemas`` beside ``runner/`` in a source checkout.

Installed from a wheel, the three are one directory tree: pyproject.toml's
``package-dir`` mapping puts ``reporters/`` and ``schemas/`` inside
``runner/``. In the repository they sit side by side. So when ``runner`` is
imported from a checkout (``python -m runner`` or pytest in the repository,
an editable install), its two subpackages are taken from that same checkout:
found even when the checkout was never installed, and never from another
checkout whose editable install happens to be in the environment.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec, PathFinder

SIBLINGS = ("reporters", "schemas")


class CheckoutFinder:
    """A meta-path finder for ``runner.<sibling>``: the sibling directory of one checkout."""

    def __init__(self, checkout: str):
        self.checkout = checkout

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        parent, _, name = fullname.rpartition(".")
        if parent != "runner" or name not in SIBLINGS:
            return None
        return PathFinder.find_spec(fullname, [self.checkout])


def map_siblings(package_dir: str) -> None:
    """Install a :class:`CheckoutFinder` when ``package_dir`` (runner's own directory) is in a checkout."""
    if any(os.path.isdir(os.path.join(package_dir, name)) for name in SIBLINGS):
        return  # installed: the subpackages are where the import system looks anyway
    checkout = os.path.dirname(os.path.abspath(package_dir))
    if not all(os.path.isfile(os.path.join(checkout, name, "__init__.py")) for name in SIBLINGS):
        return
    if not any(isinstance(finder, CheckoutFinder) and finder.checkout == checkout for finder in sys.meta_path):
        sys.meta_path.insert(0, CheckoutFinder(checkout))
