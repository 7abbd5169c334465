"""``python -m jobs worker [--concurrency N] [--once] [--poll S] [--idle-exit S]``."""

from __future__ import annotations

import argparse
import sys
import threading

from audit.errors import AuditError
from audit.settings import load_settings
from jobs.worker import stop_on_signals, work, work_concurrently


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs", description="Sieve's job worker.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = commands.add_parser("worker", help="claim and run queued audit jobs")
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument("--once", action="store_true", help="run one job, then exit")
    worker.add_argument("--poll", type=float, default=1.0, help="seconds between queue checks")
    worker.add_argument("--idle-exit", type=float, default=30.0,
                        help="exit after this many seconds with an empty queue (default 30)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        if args.concurrency > 1:
            return work_concurrently(settings, args.concurrency, _child_args(args))
        stop = threading.Event()
        stop_on_signals(stop)
        ran = work(settings, once=args.once, poll_s=args.poll, idle_exit_s=args.idle_exit,
                   stop=stop)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"worker exiting after {ran} job(s)", flush=True)
    return 0


def _child_args(args) -> list[str]:
    once = ["--once"] if args.once else []
    return [*once, "--poll", str(args.poll), "--idle-exit", str(args.idle_exit)]


if __name__ == "__main__":
    sys.exit(main())

