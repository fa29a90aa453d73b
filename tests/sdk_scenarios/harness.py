"""Run a Python file with Ratio1's SDK, timing every ``Session`` it starts (run by the SDK's interpreter).

    <sdk venv>/bin/python harness.py FILE

The file runs as ``__main__``, unchanged (the tests pass the code blocks of docs/ratio1-sdk.md this way). The last
line printed is ``SDK_HARNESS {"sessions": [{"seconds": ..., "address": ...}], "sdk_version": ...}``: how long
each ``Session(...)`` took to return (Ratio1's SDK blocks up to 30 s there until a supervisor's NET_MON_01
arrives) and the SDK's own address.
"""

from __future__ import annotations

import json
import runpy
import sys
import time

import ratio1

sessions: list[dict[str, object]] = []
original_init = ratio1.Session.__init__


def timed_init(self: ratio1.Session, *args: object, **kwargs: object) -> None:
    started = time.monotonic()
    original_init(self, *args, **kwargs)
    sessions.append({"seconds": round(time.monotonic() - started, 3), "address": self.get_client_address()})


ratio1.Session.__init__ = timed_init  # type: ignore[method-assign]

if __name__ == "__main__":
    try:
        runpy.run_path(sys.argv[1], run_name="__main__")
    finally:
        report = {"sessions": sessions, "sdk_version": getattr(ratio1, "__version__", None)}
        print("SDK_HARNESS " + json.dumps(report), flush=True)
