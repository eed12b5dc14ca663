"""`python -m limit.training.launch TORCHRUN_ARGS...`: torchrun (PyTorch's own launcher, run in this process),
with its outcome told as a step's exit code and its ranks ending with it.

torchrun exits 1 whatever its ranks did; a step's exit code says whether a retry can help: 2 when a rank
refused bad input (every rank refuses alike), 75 when a rank was killed (SIGKILL: the OOM killer, `kill -9`,
a node going away) or could not reach a service, else 1. A rank torchrun stops because another failed ends
by SIGTERM and tells nothing. Stopped itself (SIGTERM, SIGINT), torchrun stops every rank first: 130.
"""

from __future__ import annotations

import os
import signal
import sys

from limit.cpu import available_cpus
from limit.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE
from limit.execution.lifetime import started_by

EXIT_INTERRUPTED = 130


def command(nproc: int, argv: list[str]) -> list[str]:
    """The command line that runs `python argv...` once per rank, on this node."""
    return [sys.executable, "-m", "limit.training.launch", "--standalone", f"--nproc-per-node={nproc}", *argv]


def cpu_environment(nproc: int) -> dict[str, str]:
    """CPU processes standing in for GPUs: DeepSpeed's CPU accelerator (gloo without oneCCL), and this
    process's threads shared between the ranks rather than multiplied by them."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or available_cpus())
    return {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": str(max(1, threads // nproc))}


def exit_code(codes: list[int]) -> int:
    """A step's exit code from its failed ranks' (negative: killed by that signal)."""
    if EXIT_BAD_INPUT in codes:
        return EXIT_BAD_INPUT
    if EXIT_UNAVAILABLE in codes or -signal.SIGKILL in codes:
        return EXIT_UNAVAILABLE
    return 1


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.update(started_by({}))  # every rank ends with this process
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        codes = {rank: failure.exitcode for rank, failure in e.failures.items()}
        print(f"limit: ranks failed (exit codes by rank: {codes})", file=sys.stderr, flush=True)
        return exit_code(list(codes.values()))
    except SignalException as e:
        print(f"limit: stopped by signal {e.sigval}: every rank stopped", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
