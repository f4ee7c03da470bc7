"""`preftune methods`: every alignment method with its data view, reference and hyperparameters.

Reads only the registry's metadata, so it runs without importing torch (`--markdown`, which
prints docs/methods.md with each loss's formula, imports the losses).
"""

from __future__ import annotations

import json

from preftune.losses.registry import METHODS, PAIR_MODIFIERS, VIEWS, WEIGHTINGS, WPO_PAPER

COLUMNS = ("method", "view", "reference", "hyperparameters (defaults)", "needs", "paper")


def add_arguments(parser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print machine-readable JSON")
    output.add_argument(
        "--markdown",
        action="store_true",
        help="print the methods reference (docs/methods.md): formulas, papers, defaults, data",
    )
    parser.add_argument(
        "--view",
        choices=VIEWS,
        help="only methods of this data view",
    )


def _hparams_json(hparams) -> dict:
    return {
        name: {"default": hparam.default, "allowed": hparam.allowed(), "doc": hparam.doc}
        for name, hparam in hparams.items()
    }


def _as_json(spec) -> dict:
    return {
        "name": spec.name,
        "view": spec.view,
        "needs_reference": spec.needs_reference,
        "hparams": spec.defaults,
        "hparam_details": _hparams_json(spec.hparams),
        "needs": list(spec.needs),
        "extra_inputs": list(spec.extra_inputs),
        "optional_inputs": list(spec.optional_inputs),
        "paper": spec.paper,
        "description": spec.description,
    }


def _row(spec) -> tuple[str, ...]:
    hparams = ", ".join(f"{name}={value}" for name, value in spec.defaults.items()) or "-"
    needs = ", ".join(
        [*spec.needs, *(i for i in spec.extra_inputs if i not in spec.optional_inputs)]
    )
    return (
        spec.name,
        spec.view,
        "yes" if spec.needs_reference else "no",
        hparams,
        needs or "-",
        spec.paper,
    )


def format_table(specs) -> str:
    rows = [COLUMNS, *(_row(spec) for spec in specs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * len(COLUMNS[-1]))
    return "\n".join(line.rstrip() for line in lines)


def run(args) -> int:
    specs = [spec for spec in METHODS.values() if args.view in (None, spec.view)]
    if args.markdown:
        from preftune.losses.docs import render

        print(render(specs), end="")
        return 0
    if args.json:
        listing = {
            "methods": [_as_json(spec) for spec in specs],
            "weightings": {"wpo": WPO_PAPER},
            "pair_modifiers": _hparams_json(PAIR_MODIFIERS),
        }
        print(json.dumps(listing, indent=2))
        return 0
    print(format_table(specs))
    print(
        f"\n{len(specs)} methods. Pairwise methods also take weighting="
        f"{'/'.join(WEIGHTINGS)!r} ({WPO_PAPER}). needs: data fields and extra tensors required. "
        "Ranges, formulas and papers: preftune methods --markdown (docs/methods.md)."
    )
    return 0
