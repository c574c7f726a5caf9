"""The OpenAPI description tells the truth: schemathesis, with every check, finds no fault.

The schemathesis CLI (the command an operator would run) tests the real app, served by uvicorn
in this process on the test Redis: schema-valid requests must be accepted, schema-invalid ones
refused, every status and body must be described, and a 405 must carry ``Allow``. Generation
is deterministic and bounded (``--max-examples``), so a failure reproduces and the run stays
short. Session routes mostly answer 404 (a made-up token looks like a missing session, by
design); 404 is described, so that is no fault.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from support.harness import serve, settings_for

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 10  # per operation and phase (the coverage phase adds its own cases)
# the run's bound: the coverage phase enumerates every field's boundaries, and the alert
# bodies (a oneOf per kind, in POST/PUT /api/alerts and inside POST /api/alerts/backtest)
# make ~600 cases each, 30-40 s apiece on a shared 2-core machine
RUN_BOUND_S = 220


@pytest.mark.timeout(RUN_BOUND_S + 20)
async def test_schemathesis_with_every_check_finds_nothing(redis_url: str, tmp_path: Path) -> None:
    # a channel's test send reaches out (schemathesis makes channels): bound each one to 1 s
    async with serve(settings_for(redis_url, channel_timeout_s=1.0)) as server:
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            f"{server.base}/openapi.json",
            "--checks=all",
            f"--max-examples={MAX_EXAMPLES}",
            "--generation-deterministic",
            "--workers=1",
            cwd=tmp_path,  # the CLI keeps its run state (.schemathesis/) in the working directory
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(RUN_BOUND_S):
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report
    assert re.search(r"\b(\d+) generated, \1 passed\b", report), report  # something ran, all passed
