"""The test command's own set-up: the serial list of ``tests/conftest.py`` names real tests."""

import ast
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
