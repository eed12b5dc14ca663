"""`limit`: the command line. Bad input ends in one line on stderr and exit code 2, never a traceback.

Each subcommand lives in a module with `add_arguments(parser)` and `main(args) -> int`, imported only when
that subcommand runs, so `limit --help` and `limit plan` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from limit.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, LimitError, UnavailableError

COMMANDS = {  # name: (module, help)
    "run": ("limit.commands.run", "Run a study on this machine (local backend)."),
    "plan": ("limit.commands.plan", "Print a study's plan: steps, dependencies, keys and each step's argv."),
    "step": ("limit.commands.step", "Run one plan step: what each pod runs (`limit plan` prints the argv)."),
    "studies": ("limit.commands.studies", "List the shipped studies."),
    "status": ("limit.commands.status", "Where a study stands, from the artifact store: each step's state."),
    "verify": ("limit.commands.verify", "Read every completed step's files; check their sizes and sha256."),
    "report": ("limit.commands.report", "Render a study's report from stored outputs, computing nothing."),
    "export": ("limit.commands.export", "Write the one-row-per-model table of a study as CSV."),
    "gauntlet": ("limit.commands.gauntlet", "Score one model on the Eval Gauntlet, outside any study."),
    "gauntlet-convert": (
        "limit.commands.gauntlet_convert",
        "Make gauntlet files for the 4 v0 benchmarks missing from ../shared, from their public datasets.",
    ),
    "judge-pair": ("limit.commands.judge_pair", "Judge two models' responses pairwise; print win rates."),
    "reproduce-winrates": (
        "limit.commands.reproduce_winrates",
        "Recompute the paper's win rates from the authors' released GPT-4 judgments.",
    ),
    "manifest": ("limit.commands.manifest", "Write a study's Argo Workflow YAML (no cluster needed)."),
    "submit": ("limit.commands.submit", "Submit a study to Argo Workflows and print its UI link."),
    "parent-run": ("limit.commands.parent_run", "Start or end a study's MLflow parent run (on Argo)."),
    "check-gpu": ("limit.commands.check_gpu", "Check a GPU node before a long study: exactness, recipe, speed."),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or value reported like any bad input: one line, exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All subcommands are listed; only `command`'s module is imported for its own arguments."""
    parser = _Parser(
        prog="limit",
        description="Instruction-tuning studies: finetune, Eval Gauntlet, pairwise judge, report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return args.handler(args) or 0
    except UnavailableError as e:
        print(f"limit: unavailable (worth retrying): {_one_line(e)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except LimitError as e:
        print(f"limit: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("limit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `limit plan full | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (interpreter exit flushes stdout once more)
        return 0


def _one_line(error: Exception) -> str:
    """An error's message on one line, whatever a library put in it."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
