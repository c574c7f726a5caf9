"""bench/bench_revaluation.py builds the session hashes with the create script's raw arguments
(the bulk path a store method cannot give), which mypy cannot check: when the script took four
more arguments, the bench broke unseen. Run it small, so a change of the script's arguments
fails here."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_revaluation.py"


async def test_the_revaluation_bench_runs_and_revalues_every_session() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH), "300",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["sessions"] == 300 and report["cold_report"]["updated"] == 300
