"""The test command's own set-up: the serial list of ``tests/conftest.py`` names real tests."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import SERIAL

TESTS = Path(__file__).resolve().parent


def test_every_serial_entry_names_a_test_that_exists() -> None:
    # a renamed test would silently leave the serial run and run beside other files again
    missing = []
    for entry in sorted(SERIAL):
        file, _, name = entry.partition("::")
        path = TESTS / file
        tree = ast.parse(path.read_text(encoding="utf-8")) if path.is_file() else ast.Module(body=[], type_ignores=[])
        if not any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body):
            missing.append(entry)
    assert not missing, f"tests/conftest.py SERIAL names tests that do not exist: {missing}"


def collected_ids(seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return sorted(line for line in out.stdout.splitlines() if "::" in line)


def test_every_process_collects_the_same_test_ids() -> None:
    # pytest-xdist refuses to run when its workers collect different ids (a parameter id made from random bytes,
    # a set's order under another hash seed): the whole suite then errors before its first test
    first, second = collected_ids("1"), collected_ids("2")
    assert len(first) > 1000
    assert first == second, sorted(set(first) ^ set(second))[:10]
