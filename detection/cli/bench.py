"""`bench`: the benchmark of the detection path (see detection/bench.py for what it measures)."""

from __future__ import annotations

import argparse
import sys

from detection.bench import BenchFailure, run
from detection.cli.common import (
    add_rules_option,
    add_settings_option,
    load_ruleset,
    load_settings,
    run_command,
    warn,
    write_json_line,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="measure the detection path against plain JSON parsing",
        description="Generate a deterministic tenant-like stream, then measure on one core: orjson.loads of "
                    "every body, the full path with the prefilter off and on (their alerts must be "
                    "identical), the health census of every body alone and with the prefiltered path "
                    "(the handler's per-batch CPU short of storage), the peak RSS of one 10 000-record "
                    "batch and the function app's import time. The last line is one JSON object with the "
                    "figures.")
    bench.add_argument("--records", type=int, default=100_000, metavar="N",
                       help="records in the stream (default 100000)")
    bench.add_argument("--seed", type=int, default=1, help="seed of the generated stream (default 1)")
    bench.add_argument("--repeat", type=int, default=5, metavar="N",
                       help="runs of the fast measurements; the best counts (default 5)")
    bench.add_argument("--batch-records", type=int, default=10_000, metavar="N",
                       help="records in the batch whose peak RSS is measured (default 10000)")
    bench.add_argument("--json-only", action="store_true", help="print only the final JSON line")
    add_rules_option(bench)
    add_settings_option(bench)
    bench.set_defaults(func=lambda args: run_command(run_bench, args))


def run_bench(args: argparse.Namespace) -> int:
    if min(args.records, args.repeat, args.batch_records) <= 0:
        warn("error: --records, --repeat and --batch-records must be greater than 0")
        return 2
    settings = load_settings(args)
    rules = load_ruleset(settings, args).rules
    rules_dir = args.rules or settings.rules_dir

    def say(line: str) -> None:
        if not args.json_only:
            print(line, flush=True)

    try:
        figures = run(args.records, args.seed, args.repeat, settings, rules, rules_dir, say,
                      batch_records=args.batch_records)
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    write_json_line(figures)
    return 0
