"""Where the client generators live, and skipping (or, in CI, failing) when one is missing.

openapi-generator needs a Java runtime; openapi-typescript, openapi-fetch and typescript are
npm packages that `.ci/generator-tools` installs into `.cache/node` (pinned there). With
REQUIRE_GENERATORS=1 (as `.ci/run` sets it) a missing tool fails the test instead of skipping
it, so CI cannot go green without having run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / ".cache" / "node" / "node_modules" / ".bin"
TYPESCRIPT_DIR = Path(__file__).resolve().parent / "typescript"
OPENAPI_GENERATOR = Path(sys.executable).with_name("openapi-generator-cli")


def missing(what: str) -> None:
    """Skip, or fail when REQUIRE_GENERATORS is set."""
    message = f"{what} (install with: bash .ci/generator-tools)"
    if os.environ.get("REQUIRE_GENERATORS"):
        pytest.fail(f"REQUIRE_GENERATORS is set but {message}")
    pytest.skip(message)


def openapi_generator() -> Path:
    if shutil.which("java") is None:
        missing("no Java runtime for openapi-generator")
    if not OPENAPI_GENERATOR.exists():
        missing("openapi-generator-cli is not installed in this environment")
    return OPENAPI_GENERATOR


def node_tool(name: str) -> Path:
    if shutil.which("node") is None:
        missing("node is not installed")
    tool = NODE_BIN / name
    if not tool.exists():
        missing(f"{name} is not installed in {NODE_BIN.parent.parent}")
    return tool


def run(
    command: list[str | Path],
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> str:
    """Run a generator, compiler or script; return its standard output (a failure shows
    both outputs)."""
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return done.stdout


def node_options() -> list[str]:
    """Node 18 (Debian 12's) has Web Crypto as `globalThis.crypto` only behind a flag."""
    node = shutil.which("node")
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return ["--experimental-global-webcrypto"] if major < 19 else []
