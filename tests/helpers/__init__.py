"""Helpers shared by test modules (imported as ``tests.helpers.…``; fixtures live in ``conftest.py`` files).

Test modules import from here, never from a sibling test module or a ``conftest.py``.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
