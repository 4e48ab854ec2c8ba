"""The ``update`` action's options of ``streetedge cmd``: ``--package``, ``--canary``, ``--stop-on-failure``.

``--package`` takes a package file (its header gives the image's SHA-256, which is all the command
carries: the gateway finds the package in its own ``[update] packages`` directory) or that hash itself.
Nothing is assumed: each of the three must be given, here or in ``--params``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from tools.exit_codes import CliError

_HASH = re.compile(r"[0-9a-fA-F]{64}")


def update_params(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed from the options; CliError names what is missing or wrong (nothing is sent)."""
    from gateway.update.package import PackageError, load_package

    out = dict(params)
    if args.package is not None:
        if _HASH.fullmatch(args.package):
            out["package"] = args.package.lower()
        else:
            try:
                out["package"] = load_package(Path(args.package)).digest.hex()
            except PackageError as exc:
                raise CliError(f"--package: {exc}; nothing sent") from None
    if args.canary is not None:
        out["canary"] = [] if args.canary == "none" else [c for c in args.canary.split(",") if c]
    if args.stop_on_failure is not None:
        out["stop_on_failure"] = args.stop_on_failure == "yes"
    for name, option in (("package", "--package FILE|SHA256"), ("canary", "--canary NODES|none"),
                         ("stop_on_failure", "--stop-on-failure yes|no")):
        if name not in out:
            raise CliError(f"update needs {option}; nothing sent")
    return out
