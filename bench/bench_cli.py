"""The command line every per-model quality bench shares (transfer, calibration): which models, where the
cached stages and results go, threads, held-out samples, and a summary rebuilt from the results alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch

from bench_io import write_json, write_summary
from zoo_models import ModelSpec, default_models, model_spec

ROOT = Path(__file__).resolve().parents[1]


def numbers(kind: type) -> Callable[[str], list]:
    """argparse type: comma-separated numbers of `kind`."""
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


def model_bench_parser(doc: str, work: str, out: str) -> argparse.ArgumentParser:
    """A parser with the shared options; the bench adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated zoo/NAME folders and built-ins (default: the zoo, "
                                                       "digits-dit and reference-dit)")
    parser.add_argument("--zoo-root", default=str(ROOT / "zoo"))
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds of model work per solve (charged at "
                        "the profile's generation time: schedc.search_time): the search stops at its evaluation budget "
                        "or this, whichever comes first")
    parser.add_argument("--samples", type=int, default=64, help="held-out samples (default 64)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=work, help=f"cached stages, so a rerun resumes (default {work})")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / out))
    parser.add_argument("--summary-only", action="store_true", help="rebuild summary.md from the results and stop")
    return parser


def transfer_profiles_parser(doc: str, out: str, budgets: tuple[float, ...] = (0.2, 0.4)) -> argparse.ArgumentParser:
    """model_bench_parser for a bench that reads the transfer bench's cached profiles (same --work default), with the
    budgets it solves at and the calibration samples of those profiles (16, as the transfer bench)."""
    parser = model_bench_parser(doc, "/tmp/schedc-transfer", out)
    parser.add_argument("--budgets", type=numbers(float), default=list(budgets))
    parser.add_argument("--calib", type=int, default=16, help="calibration samples of every profile (default 16)")
    return parser


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    """The models of --models, or every zoo model, digits-dit and reference-dit."""
    zoo_root = Path(args.zoo_root)
    names = ([n.strip() for n in args.models.split(",") if n.strip()] if args.models
             else default_models(zoo_root) + ["reference-dit"])
    return [model_spec(name, zoo_root) for name in names]


def run_per_model(args: argparse.Namespace, run_model: Callable[[ModelSpec], dict | None],
                  render: Callable[[list[dict]], str], key: str = "rows") -> int:
    """The per-model bench's main loop: unless --summary-only, run every model of --models at --threads and write
    <out>/<model>.json (a model `run_model` returns None for is skipped); then rebuild and print the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        torch.set_num_threads(args.threads)
        for spec in model_specs(args):
            result = run_model(spec)
            if result is not None:
                write_json(out / f"{spec.name}.json", result)
    print(write_summary(out, render, key))
    return 0
