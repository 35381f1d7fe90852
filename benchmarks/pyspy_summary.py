"""Summarise a py-spy ``--format raw`` file (collapsed stacks): top self frames, and the share of
samples whose stack holds a given frame (inclusive), optionally only among stacks through
``--within`` (a function name).

Usage: python benchmarks/pyspy_summary.py FILE [--within queue_run] [--top 15]
       [--inclusive "_fire (" ...] [--leaf store/ ...]

py-spy (without --native) shows no C frames: time inside ``sqlite3`` (a statement, a COMMIT and
its fsync) is counted on the Python line that called ``execute``, so an innermost frame in
``taskengine_core/store/`` is SQLite's time (and the binding's), anything else is Python.
"""

from __future__ import annotations

import argparse
import collections
import re

_LINE = re.compile(r"(?P<stack>.*) (?P<count>\d+)$")


def load(path: str, within: str | None) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            match = _LINE.match(line.rstrip("\n"))
            if not match:
                continue
            frames = match["stack"].split(";")
            if within and not any(frame.startswith(within + " ") for frame in frames):
                continue
            stacks.append((frames, int(match["count"])))
    return stacks


def _name(frame: str) -> str:
    """``function (file.py)`` without the line number (so samples of one function add up)."""
    return re.sub(r":\d+\)$", ")", frame.replace("/work/", ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--within")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--inclusive", action="append", default=[])
    parser.add_argument("--leaf", action="append", default=[],
                        help="share of samples whose innermost frame contains this (e.g. store/: the "
                             "store's statements, SQLite's time inside execute/commit)")
    args = parser.parse_args()
    stacks = load(args.file, args.within)
    total = sum(count for _, count in stacks)
    if not total:
        print("no samples")
        return
    own = collections.Counter()
    for frames, count in stacks:
        own[_name(frames[-1])] += count
    print(f"{total} samples" + (f" through {args.within}" if args.within else ""))
    print("top self frames:")
    for name, count in own.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    for needle in args.inclusive:
        inside = sum(count for frames, count in stacks if any(needle in frame for frame in frames))
        print(f"inclusive {needle!r}: {inside / total:.1%}")
    for needle in args.leaf:
        inside = sum(count for frames, count in stacks if needle in frames[-1])
        print(f"innermost frame in {needle!r}: {inside / total:.1%}")


if __name__ == "__main__":
    main()
