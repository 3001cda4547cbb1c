"""This machine's fp32 matmul rate (its compute limit here), repeated: `python bench/matmul.py`.

Writes bench/results/matmul.{json,md} headed by the command, the commit and the machine, so that figures
taken on different machines can say which machine they are from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, matmul_gflops, write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="bench/results/matmul.json")
    ap.add_argument("--md", default="bench/results/matmul.md")
    args = ap.parse_args(argv)
    runs = [round(matmul_gflops(args.threads), 1) for _ in range(args.repeats)]
    report = {"header": header(), "threads": args.threads, "size": 2048, "gflops": runs}
    md = "\n".join(
        [
            "# fp32 matmul rate (2048 x 2048, torch)",
            "",
            *header_lines(report["header"]),
            "",
            f"{args.threads} threads, {args.repeats} runs of ~3 s: **{', '.join(map(str, runs))} GFLOP/s**",
            "",
        ]
    )
    write_report(report, md, args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
