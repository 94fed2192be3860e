"""``python -m delivery.simulators``: the simulators without Django (bench, e2e)."""

from __future__ import annotations

import argparse
import sys

from delivery.simulators.cli import add_simulator_arguments, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m delivery.simulators", description=__doc__)
    add_simulator_arguments(parser)
    run(vars(parser.parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    main()
