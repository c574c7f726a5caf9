"""bench/bench_revaluation.py builds the session hashes with the create script's raw arguments
(the bulk path a store method cannot give), which mypy cannot check: when the script took four
more arguments, the bench broke unseen. Run it small, so a change of the script's arguments
fails here. It also runs the rest of the bench's phases (the redis-benchmark baseline, the GET
probe in another process, the 3- and 1-primary clusters), so none of them rots unseen."""

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
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["sessions"] == 300 and report["cold_report"]["updated"] == 300
    assert report["get_during_warm_sweep"]["gets"] > 0 and report["get_idle"]["gets"] > 0
    assert report["cluster_3_primaries"]["sessions"] == 300
    assert report["cluster_1_primary"]["sessions"] == 300
    assert report["cold_ratio_to_baseline"] > 0 and report["warm_ratio_to_baseline"] > 0
