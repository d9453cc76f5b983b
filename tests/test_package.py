"""The public names of DESIGN.md's conventions, and what ``import symode`` loads."""

import subprocess
import sys

import pytest

import symode as so


@pytest.mark.parametrize("name", ["ODE", "solve", "solve_vjp", "fit_parameters", "nn", "models",
                                  "data", "viz", "SymodeError", "source"])
def test_public_names(name):
    assert name in so.__all__ and getattr(so, name) is not None


def test_subpackages_load_on_first_use():
    code = ("import sys, symode as so\n"
            "assert 'symode.nn' not in sys.modules and 'symode.models' not in sys.modules\n"
            "assert so.nn.Linear and so.models.CNF and so.data.sample_toy\n"
            "assert 'symode.nn' in sys.modules\n"
            "try:\n    so.nonexistent\nexcept AttributeError as e:\n"
            "    assert 'nonexistent' in str(e)\nelse:\n    raise SystemExit(1)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
