"""``python -m parakit.bench``: the same as ``parakit bench`` (the student release has no
``parakit`` command; this works in the kit and in a release alike)."""

import argparse
import sys

from parakit import bench

parser = argparse.ArgumentParser(prog="python -m parakit.bench",
                                 description=bench.__doc__.split("\n\n")[0])
bench.add_arguments(parser)
sys.exit(bench.main(parser.parse_args()))
