"""``edge-node dry-run``: a pipeline or one plugin on a local source, JSON lines out, a summary, no node state.

The last test starts the real command in a subprocess and prints the time from process start to the first
payload line on stdout (the issue's budget: 1 s for a pipeline without a model; the test allows 5 s so a
loaded CI machine does not fail it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write_plugin

from edge_engine.cli import dry_run

IMAGES = """
    from edge_engine.api import BusinessPlugin

    class Witness(BusinessPlugin):
        SIGNATURE = "WITNESS"

        def process(self, inp):
            self.emit({"SEQ": inp.seq}, image=inp.image)
"""
FAILING = """
    from edge_engine.api import BusinessPlugin

    class Flaky(BusinessPlugin):
        SIGNATURE = "FLAKY"

        def process(self, inp):
            if inp.seq % 2 == 0:
                raise ValueError(f"even input {inp.seq}")
            return {"SEQ": inp.seq}
"""
TICKER = """
    from edge_engine.api import BusinessPlugin

    class Ticker(BusinessPlugin):
        SIGNATURE = "TICKER"

        def process(self, inp):
            return {"TICK": inp is None}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "business/witness.py", IMAGES)
    write_plugin(plugins, "business/flaky.py", FAILING)
    write_plugin(plugins, "business/ticker.py", TICKER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EE_CACHE_DIR", raising=False)
    return plugins


def run(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    argv = [*args, "--plugin-folder", str(REPO / "extensions"), "--plugin-folder", str(REPO / "plugins"),
            "--plugin-folder", str(folder), "--no-entry-points"]  # fmt: skip
    code = dry_run.main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_plugin_with_inline_config_on_synthetic_frames(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(folder, capsys, "--plugin", "TUTORIAL_HELLO", "--config", '{"EVERY": 5}', "--inputs", "20")
    assert code == 0, err
    payloads = [line for line in lines if line["type"] == "payload"]
    assert [p["data"]["SEEN"] for p in payloads] == [5, 10, 15, 20]
    assert payloads[0]["path"] == ["dry-run", "dry-run", "TUTORIAL_HELLO", "dry-run"]
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert (summary["inputs"], summary["payloads"], summary["errors"]) == (20, 4, 0)
    assert summary["stopped_by"] == "20 inputs read"
    assert summary["timings"]["capture"]["count"] == 20 and summary["timings"]["serving"]["count"] == 20
    assert summary["timings"]["business"]["TUTORIAL_HELLO/dry-run"]["count"] == 20
    assert summary["effective_rate"] > 0 and summary["first_payload_budget_s"] == 1.0
    assert summary["first_payload_s"] is not None
    assert "dry run 'dry-run': 20 inputs, 4 payloads, 0 errors" in err and "first payload after" in err
    assert not (folder.parent / "_local_cache").exists(), "a dry run must not create the local cache"


def test_pipeline_file_with_witness_images(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "witness"
    pipeline = {"NAME": "pics", "TYPE": "SYNTHETIC", "WIDTH": 64, "HEIGHT": 48,
                "PLUGINS": [{"SIGNATURE": "WITNESS", "INSTANCES": [{"INSTANCE_ID": "w"}]}]}  # fmt: skip
    path = tmp_path / "pics.json"
    path.write_text(json.dumps(pipeline), encoding="utf-8")
    code, lines, err = run(folder, capsys, str(path), "--inputs", "3", "--images", str(images))
    assert code == 0, err
    payloads = [line for line in lines if line["type"] == "payload"]
    assert [p["data"]["SEQ"] for p in payloads] == [1, 2, 3]
    files = sorted(images.iterdir())
    assert [p["image"] for p in payloads] == [str(f) for f in files] and len(files) == 3
    assert files[0].read_bytes()[:2] == b"\xff\xd8"  # JPEG
    assert lines[-1]["images_dir"] == str(images)


def test_a_capture_plugin_alone_prints_its_inputs(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(folder, capsys, "--plugin", "tutorial_counter", "--config", '{"RATE": 500, "LIMIT": 3}',
                           "--inputs", "0")  # fmt: skip
    assert code == 0, err
    assert [line["data"]["DATA"] for line in lines if line["type"] == "payload"] == [{"count": n} for n in range(3)]
    assert lines[-1]["stopped_by"] == "end of stream"


def test_seconds_limit_with_a_timer_plugin_on_void(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = '{"ALLOW_EMPTY_INPUTS": true, "PROCESS_DELAY": 0.05}'
    code, lines, _ = run(folder, capsys, "--plugin", "TICKER", "--config", config, "--source", "void",
                         "--seconds", "0.4")  # fmt: skip
    assert code == 0
    assert lines[-1]["stopped_by"] == "0.4 s elapsed" and lines[-1]["inputs"] == 0
    assert 2 <= lines[-1]["payloads"] <= 12


def test_errors_are_counted_and_exit_1(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(folder, capsys, "--plugin", "FLAKY", "--source", "synthetic:messages", "--inputs", "6")
    assert code == 1
    summary = lines[-1]
    assert (summary["inputs"], summary["payloads"], summary["errors"]) == (6, 3, 3)
    assert summary["last_errors"] == {"FLAKY/dry-run": "ValueError: even input 6"}
    assert "last error FLAKY/dry-run: ValueError: even input 6" in err


def test_a_failing_source_ends_the_run_with_a_notification(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_video = tmp_path / "clip.mp4"
    not_a_video.write_text("not a video", encoding="utf-8")
    code, lines, _ = run(folder, capsys, "--plugin", "TUTORIAL_HELLO", "--source", str(not_a_video))
    assert code == 1
    notes = [line for line in lines if line["type"] == "notification"]
    assert notes and notes[0]["level"] == "error" and notes[0]["message"].startswith("capture failed")
    assert lines[-1]["stopped_by"] == "source failed"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--plugin", "TUTORIAL_HELO"], 2, "no business or capture plugin has this signature; did you mean "
                                           "'TUTORIAL_HELLO'?"),
        (["--plugin", "TUTORIAL_HELLO", "--config", '{"EVRY": 2}'], 1,
         "--plugin › pipeline 'dry-run' › plugin 'TUTORIAL_HELLO' › instance 'dry-run' › key 'EVRY': unknown key; "
         "did you mean 'EVERY'?"),
        (["--plugin", "TUTORIAL_HELLO", "--config", "[1]"], 2, "--config must be a JSON object"),
        (["--plugin", "TUTORIAL_HELLO", "--source", "nowhere.mp4"], 2, "--source 'nowhere.mp4': no such file"),
        ([], 2, "give a pipeline JSON file or --plugin SIG"),
    ],
)  # fmt: skip
def test_bad_arguments_are_explained(
    folder: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, lines, err = run(folder, capsys, *args)
    assert got == code
    assert message in err and lines == []


def test_source_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "v.mkv").write_bytes(b"x")
    assert dry_run.source_config("synthetic:noise") == {"TYPE": "SYNTHETIC", "MODE": "noise"}
    assert dry_run.source_config("rtsp://cam/1") == {"TYPE": "VIDEO_STREAM", "URL": "rtsp://cam/1"}
    assert dry_run.source_config(str(tmp_path)) == {"TYPE": "IMAGE_FOLDER", "PATH": str(tmp_path)}
    assert dry_run.source_config(str(tmp_path / "a.png")) == {"TYPE": "IMAGE_FOLDER", "PATH": str(tmp_path),
                                                              "PATTERN": "a.png"}  # fmt: skip
    assert dry_run.source_config(str(tmp_path / "v.mkv"))["TYPE"] == "VIDEO_FILE"


def test_start_to_first_payload_of_the_real_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Time from starting ``cmds/dry_run`` to its first payload line (interpreter start and imports included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")} | {"EE_LOAD_ENTRY_POINTS": "0"}
    command = [sys.executable, str(REPO / "cmds" / "dry_run"), "--plugin", "TUTORIAL_HELLO",
               "--config", '{"EVERY": 1}', "--inputs", "5"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    first_payload = time.perf_counter() - started
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(first_line)["type"] == "payload"
    summary = json.loads(rest.splitlines()[-1])
    with capsys.disabled():
        print(
            f"\n[dry-run start-up] process start → first payload {first_payload:.3f} s; in-command "
            f"{summary['first_payload_s']:.3f} s (budget {summary['first_payload_budget_s']:g} s)"
        )
    assert first_payload < 5.0
    assert not (REPO / "_local_cache" / "_output" / "dry-run").exists()
