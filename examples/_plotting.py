"""Shared by the example scripts: save a figure to ``examples/output/`` if matplotlib is there.

The examples print their numbers whether or not matplotlib is installed; the figures are
extra (``pip install -e ".[plot]"``).
"""

from __future__ import annotations

from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "output"


def pyplot():
    """``matplotlib.pyplot`` with a file-only backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print('(matplotlib is not installed, so no figure: pip install -e ".[plot]")')
        return None
    matplotlib.use("Agg")  # the scripts only write files; no window is needed
    import matplotlib.pyplot as plt

    return plt


def save(fig, name: str) -> Path:
    """Write ``fig`` to ``examples/output/<name>`` and close it."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"figure: {path}")
    return path


def progress(iterable, **kwargs):
    """``tqdm(iterable)`` when tqdm is installed, else the iterable itself."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kwargs)
