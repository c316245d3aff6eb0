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
    # Answered 503 (nothing stored, the client was told to try again).
    refused: int = 0
    # Any answer but 202/503 (a 500 above all), or no answer at all.
    errors: int = 0
    # Orders stored although their submit answered 503 ("nothing was stored").
    ghosts: int = 0
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


def table() -> list[str]:
    header = (f"{'fault':<24}{'submitted':>10}{'completed':>11}{'lost':>6}{'duplicated':>12}{'recovery':>10}"
              f"{'outage':>8}{'503':>6}{'ghost':>7}{'5xx':>5}  result")
    lines = [header, "-" * len(header)]
    for r in RESULTS:
        outage = "-" if r.outage_s is None else f"{r.outage_s:.1f}s"
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
        lines.append(f"{r.fault:<24}{r.submitted:>10}{r.completed:>11}{r.lost:>6}{r.duplicated:>12}{recovery:>10}"
                     f"{outage:>8}{r.refused:>6}{r.ghosts:>7}{r.errors:>5}  {r.verdict}")
    lines.append("lost = accepted (202) but never final; duplicated = stock over-consumed + captures beyond one"
                 " + repeated events; recovery = fault to all final; 503 = refused submits; ghost = stored behind"
                 " a 503; 5xx = any other error answer (a 500 above all)")
    notes = [(r.fault, n) for r in RESULTS for n in r.notes]
    if notes:
        lines.append("")
        lines.extend(f"  {fault}: {note}" for fault, note in notes)
    return lines
