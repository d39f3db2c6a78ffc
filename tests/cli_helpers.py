"""Running the real `vestige` and `alembic` entry points in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from vestige_embed.settings.config import DATABASE_URL_ENV

BIN = Path(sys.executable).parent


def run_tool(
    tool: str, *args: str, url: str | None, cwd: Path = ROOT, timeout: int = 300, **more_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV} | more_env
    if url is not None:
        env[DATABASE_URL_ENV] = url
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
