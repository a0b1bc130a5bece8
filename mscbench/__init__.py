"""mscbench: benchmark multi-scenario recommenders, per scenario, with significance.

The Python API (mscbench/api.py), loaded on first use so that `import mscbench` stays light:
`mscbench.compare(...)` and `mscbench.train(...)` return a `Result`: `.table` (polars DataFrame), `.runs`.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["Result", "__version__", "compare", "train"]


def __getattr__(name: str):
    if name in ("compare", "train", "Result"):
        return getattr(importlib.import_module("mscbench.api"), name)
    raise AttributeError(f"module 'mscbench' has no attribute {name!r}")
