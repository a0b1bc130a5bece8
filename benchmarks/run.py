"""`make bench`: mscbench's own benchmarks, one after the other (the peer comparison needs its own
environment: see benchmarks/README.md)."""

from __future__ import annotations

import sys

from benchmarks import metrics_speed, train_speed

QUICK = {  # module -> arguments: a few minutes on 2 cores
    train_speed: ["--train-rows", "100000", "--repeats", "2"],
    metrics_speed: ["--repeats", "2"],
}


def main() -> None:
    for module, arguments in QUICK.items():
        sys.argv = [module.__name__, *arguments]
        module.main()


if __name__ == "__main__":
    main()
