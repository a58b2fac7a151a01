"""`cifarlab check NAME --assignment ASSIGNMENT`: whether network NAME (your
nets/NAME.py, or the zoo's) meets an assignment's architecture items, in seconds and before any
training: each item, what it requires, what the network has, and the seed line it comes from."""
from __future__ import annotations

import argparse
import sys

from cifarlab.core.errors import run_command
from cifarlab.rubric import ASSIGNMENTS, MET, architecture_items, verdict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab check", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the network: one of the zoo's, or yours in nets/NAME.py")
    parser.add_argument("--assignment", required=True, choices=list(ASSIGNMENTS),
                        help="the course assignment whose items to check")
    parser.add_argument("--classes", type=int, default=10, help="outputs the network is built for (default 10)")
    args = parser.parse_args(argv)
    from cifarlab.models.registry import build_model  # torch loads after the arguments are checked

    assignment = ASSIGNMENTS[args.assignment]
    items = architecture_items(args.assignment, build_model(args.name, args.classes))
    print(f"{assignment.title} (../shared/seeds/{assignment.seed}): the architecture of {args.name}\n")
    print("| item | required | measured | met | from the assignment |\n|---|---|---|---|---|")
    for item in items:
        met = MET[item.passed]
        print(f"| {item.name} | {item.required} | {item.measured} | {met} | {item.source} |")
    if assignment.not_checked:
        print(f"\nnot checked: {assignment.not_checked}")
    print(f"\n{verdict(assignment.title, items)}")


if __name__ == "__main__":
    sys.exit(run_command(main))
