"""The README's table of what the paper's grids cost, made from what `glue-bench sweep FILE --dry-run --device
cpu` and `--device cuda` print (the same function, glue_bench.sweeping.plan.dry_run, on an empty storage: the
speeds of results/throughput.csv, or a FLOP estimate where a device has none measured).

    python benchmarks/cost_table.py           # the table's rows, in markdown
    python benchmarks/cost_table.py --check   # exit 1 when README.md's rows differ (tests/test_readme.py)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ("paper-headline.toml", "paper.toml")
TOTALS = re.compile(
    r"of (?P<trials>[\d,]+) trials to run: (?P<train>[\d,]+) training and (?P<evals>[\d,]+) evaluated examples, "
    r"(?P<tokens>[\d,]+) training tokens"
)
HOURS = re.compile(r"^about .*?\((?P<hours>[\d,.]+) hours\)", re.MULTILINE)


def planned(path: Path, device: str) -> dict:
    """The totals a dry run of the sweep file prints on `device`."""
    from glue_bench.sweeping import sweep_file
    from glue_bench.sweeping.plan import dry_run

    sweep = sweep_file.load(path)
    with tempfile.TemporaryDirectory() as folder:  # an empty storage: no speeds measured by earlier trials
        text = dry_run(sweep, sweep.studies(), f"sqlite:///{folder}/none.db", 1, device)
    totals, hours = TOTALS.search(text), HOURS.search(text)
    if not totals or not hours:
        raise SystemExit(f"{path} --device {device}: the dry run's totals were not found in:\n{text[-2000:]}")
    found = {key: int(value.replace(",", "")) for key, value in totals.groupdict().items()}
    return {**found, "hours": float(hours["hours"].replace(",", "")), "models": len(sweep.models)}


def row(name: str) -> str:
    cpu, gpu = planned(ROOT / "sweeps" / name, "cpu"), planned(ROOT / "sweeps" / name, "cuda")
    assert {k: v for k, v in cpu.items() if k != "hours"} == {k: v for k, v in gpu.items() if k != "hours"}
    return (
        f"| `{name}` ({cpu['models']} models) | {cpu['trials']:,} | {cpu['train']:,} | {cpu['evals']:,} | "
        f"{cpu['tokens'] / 1e9:.1f} billion | {cpu['hours']:,.0f} core-hours | {gpu['hours']:,.1f} GPU-hours |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with README.md's rows; exit 1 if they differ")
    args = parser.parse_args()
    rows = [row(name) for name in SWEEPS]
    if not args.check:
        print("\n".join(rows))
        return 0
    readme = (ROOT / "README.md").read_text()
    stale = [r for r in rows if r not in readme.splitlines()]
    for r in stale:
        print(f"README.md lacks this row of the cost table (python benchmarks/cost_table.py prints them all):\n{r}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
