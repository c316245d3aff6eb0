"""What each chaos case measured: kept for the end-of-session table and written to results.json."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@functools.cache
def chaos_dir() -> Path:
    """The run dir of the chaos suite, kept after the run: each case's server logs and data, and results.json.

    KIRANA_CHAOS_DIR chooses it; by default a new temporary directory, made on first use (so that a
    `make test`, which collects but deselects the chaos cases, leaves none behind).
    """
    path = Path(os.environ.get("KIRANA_CHAOS_DIR") or tempfile.mkdtemp(prefix="kirana-chaos-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_file() -> Path:
    return chaos_dir() / "results.json"


@dataclass
class CaseResult:
    fault: str
    submitted: int
    completed: int
    lost: int
    duplicated: int
    recovery_s: float | None
    # Met a 503 at least once ("try again with the same Idempotency-Key"), and tried again.
    refused: int = 0
    # Any answer but 202/503 (a 500 above all), or no answer at all.
    errors: int = 0
    # Orders stored behind their submit's last 503 (each must still be final).
    ghosts: int = 0
    # Orders that needed beat's stuck-order sweep (the test acting as beat) to become final.
    stuck: int = 0
    # Which run of `make chaos` (KIRANA_CHAOS_ROUND), for the table of all rounds.
    round: int = field(default_factory=lambda: int(os.environ.get("KIRANA_CHAOS_ROUND") or 1))
    # How long the fault itself lasted (outage), when it has a duration.
    outage_s: float | None = None
    verdict: str = "?"
    test: str = ""
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
RESULTS: list[CaseResult] = []


def record(result: CaseResult) -> CaseResult:
    """Keep `result` for the table; rewrite results.json at once (a later crash keeps what was measured)."""
    with _lock:
        RESULTS.append(result)
        write()
    return result


def write() -> None:
    results_file().write_text(json.dumps([asdict(r) for r in RESULTS], indent=2, default=str) + "\n")


def table(results: list[CaseResult] | None = None) -> list[str]:
    rows = RESULTS if results is None else results
    header = (f"{'round':<6}{'fault':<24}{'submitted':>10}{'completed':>11}{'lost':>6}{'duplicated':>12}"
              f"{'stuck':>7}{'recovery':>10}{'outage':>8}{'503':>6}{'ghost':>7}{'5xx':>5}  result")
    lines = [header, "-" * len(header)]
    for r in rows:
        outage = "-" if r.outage_s is None else f"{r.outage_s:.1f}s"
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
        lines.append(f"{r.round:<6}{r.fault:<24}{r.submitted:>10}{r.completed:>11}{r.lost:>6}{r.duplicated:>12}"
                     f"{r.stuck:>7}{recovery:>10}{outage:>8}{r.refused:>6}{r.ghosts:>7}{r.errors:>5}  {r.verdict}")
    lines.append("lost = accepted (202) but never final; duplicated = stock over-consumed + captures beyond one"
                 " + repeated events + points applied twice + notifications sent twice; stuck = needed beat's"
                 " stuck-order sweep; recovery = fault to all final; 503 = submits that met a 503 and tried again"
                 " with the same key; ghost = stored behind a last 503 (must be final); 5xx = any other error"
                 " answer (a 500 above all)")
    notes = [(r.round, r.fault, n) for r in rows for n in r.notes]
    if notes:
        lines.append("")
        lines.extend(f"  {rnd}/{fault}: {note}" for rnd, fault, note in notes)
    return lines


def main(argv: list[str]) -> int:
    """python -m tests.chaos.report DIR: one table of every round's results.json under DIR."""
    rows = [CaseResult(**raw) for path in sorted(Path(argv[0]).glob("round-*/results.json"))
            for raw in json.loads(path.read_text())]
    for line in table(rows):
        print(line)
    failed = [r for r in rows if r.verdict != "ok"]
    print(f"\n{len(rows)} case runs in {len({r.round for r in rows})} round(s): "
          f"{len(rows) - len(failed)} ok, {len(failed)} not ok")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
