"""The TypeScript webhook check in docs/webhooks.md, compiled with `tsc --strict` and run
with node (Web Crypto), accepts what the gateway signs and refuses anything else. Skipped
without node and typescript (failed instead with REQUIRE_GENERATORS=1, as in CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.generators import NODE_BIN, node_options, node_tool, run
from tests.unit.test_docs import BODY, OLD_SECRET, SECRET, signed

pytestmark = pytest.mark.e2e

DRIVER = """\
import { verifyWebhook } from "./verify";

declare const process: { env: Record<string, string | undefined> };
type Case = { secret: string; headers: Record<string, string>; body: string };

async function main(): Promise<void> {
  const results: string[] = [];
  for (const c of JSON.parse(process.env.CASES ?? "[]") as Case[]) {
    try {
      results.push(JSON.stringify(await verifyWebhook(c.secret, c.headers, c.body)));
    } catch (err) {
      results.push(`refused: ${(err as Error).message}`);
    }
  }
  console.log(JSON.stringify(results));
}

void main();
"""
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "es2022",
        "module": "node16",
        "moduleResolution": "node16",
        "lib": ["es2022", "dom"],
        "types": [],
        "outDir": "out",
    },
    "include": ["*.ts"],
}


def test_the_typescript_snippet_accepts_what_the_gateway_signs(tmp_path: Path) -> None:
    tsc = node_tool("tsc")
    page = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    (snippet,) = re.findall(r"```typescript\n(.*?)```", page, re.S)
    (tmp_path / "verify.ts").write_text(snippet)
    (tmp_path / "driver.ts").write_text(DRIVER)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (tmp_path / "node_modules").symlink_to(NODE_BIN.parent)
    # One pass type-checks (strict) and emits: a type error fails it as --noEmit would.
    run([tsc, "--strict", "-p", tmp_path], cwd=tmp_path)

    valid = signed(BODY, SECRET)
    cases = [
        (SECRET, valid, BODY),
        (SECRET, signed(BODY, OLD_SECRET, SECRET), BODY),  # a rotation: either secret
        (OLD_SECRET, signed(BODY, OLD_SECRET, SECRET), BODY),
        (SECRET, valid, BODY.replace("confirmed", "cancelled")),
        (OLD_SECRET, valid, BODY),
        (SECRET, signed(BODY, SECRET, at=int(time.time()) - 3600), BODY),
        (SECRET, {**valid, "webhook-signature": ""}, BODY),
        (SECRET, {**valid, "webhook-id": "msg_2"}, BODY),
    ]
    env = {
        **os.environ,
        "CASES": json.dumps([{"secret": s, "headers": h, "body": b} for s, h, b in cases]),
    }
    node = shutil.which("node")
    assert node is not None
    driver = [node, *node_options(), tmp_path / "out" / "driver.js"]
    results = json.loads(run(driver, tmp_path, env=env))
    event = json.loads(BODY)
    assert [json.loads(r) for r in results[:3]] == [event, event, event]
    assert all(r.startswith("refused: ") and "webhook" in r for r in results[3:]), results
