import os

# CUDA kernels run in numba's CUDA simulator unless a real GPU is asked for
# (SYMODE_TEST_GPU=1); this must be set before numba.cuda is first imported.
if os.environ.get("SYMODE_TEST_GPU") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh seeded generator per test."""
    return np.random.default_rng(12345)
