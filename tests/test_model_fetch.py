"""Models delivered remotely: downloads from a real local HTTP server and a real S3 server (SeaweedFS), resumed
after a cut, hash-checked, written atomically, cached by hash and bounded."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_http import ModelHttpServer

from edge_engine.serving.model_fetch import (
    KEEP_UNUSED,
    ModelFetcher,
    ModelFetchError,
    fetched_path,
    parse_source,
    source_of,
)
from edge_engine.storage.storage_settings import StorageSettings

MB = 1 << 20
BLOB = os.urandom(3 * MB + 12345)  # a "model": big enough for several chunks
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def http() -> Iterator[ModelHttpServer]:
    server = ModelHttpServer().start()
    server.files["/models/yolov8n.onnx"] = BLOB
    yield server
    server.stop()


def test_a_model_is_downloaded_verified_and_then_served_from_the_cache(tmp_path: Path, http: ModelHttpServer) -> None:
    fetcher = ModelFetcher(tmp_path)
    source = parse_source(http.url("/models/yolov8n.onnx"), SHA)

    path = fetcher.ensure(source, max_bytes=64 * MB)

    assert path == tmp_path / "fetched" / f"{SHA}.onnx" and path.read_bytes() == BLOB
    assert list(path.parent.iterdir()) == [path]  # no part file left
    (entry,) = fetcher.snapshot()
    assert entry["state"] == "ready" and entry["bytes"] == entry["total"] == len(BLOB) and entry["percent"] == 100.0
    assert entry["model"] == "yolov8n.onnx" and entry["source"] == http.url("/models/yolov8n.onnx")
    assert fetcher.ensure(source, max_bytes=64 * MB) == path and len(http.requests) == 1  # cached by hash


def test_a_download_cut_halfway_resumes_where_it_stopped(tmp_path: Path, http: ModelHttpServer) -> None:
    half = len(BLOB) // 2
    http.cut_after["/models/yolov8n.onnx"] = half
    fetcher = ModelFetcher(tmp_path)

    path = fetcher.ensure(parse_source(http.url("/models/yolov8n.onnx"), SHA), max_bytes=64 * MB)

    assert path.read_bytes() == BLOB
    assert http.requests == [("/models/yolov8n.onnx", None), ("/models/yolov8n.onnx", f"bytes={half}-")]
    (entry,) = fetcher.snapshot()
    assert entry["attempts"] == 2 and entry["resumed_from"] == half and entry["state"] == "ready"


def test_a_part_left_by_a_stopped_node_is_resumed_by_the_next(tmp_path: Path, http: ModelHttpServer) -> None:
    part = tmp_path / "fetched" / f"{SHA}.part"
    part.parent.mkdir()
    part.write_bytes(BLOB[: MB + 7])
    path = ModelFetcher(tmp_path).ensure(parse_source(http.url("/models/yolov8n.onnx"), SHA), max_bytes=64 * MB)
    assert path.read_bytes() == BLOB and http.requests == [("/models/yolov8n.onnx", f"bytes={MB + 7}-")]


@pytest.mark.parametrize(
    ("path", "sha", "max_mb", "expected"),
    [
        ("/models/yolov8n.onnx", "0" * 64, 64, f"SHA-256 mismatch: MODEL_SHA256 is {'0' * 64} but the file is {SHA}"),
        ("/models/gone.onnx", SHA, 64, "model 'gone.onnx' from http://127.0.0.1:{port}/models/gone.onnx: HTTP 404"),
        ("/models/yolov8n.onnx", SHA, 1, "is over MODEL_MAX_MB (1 MB)"),
    ],
    ids=["wrong-hash", "not-found", "too-big"],  # SHA is random: ids from it differ between xdist workers
)
def test_a_wrong_hash_a_404_or_a_model_too_big_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, http: ModelHttpServer, path: str, sha: str, max_mb: int, expected: str
) -> None:
    fetcher = ModelFetcher(tmp_path)
    with pytest.raises(ModelFetchError) as caught:
        fetcher.ensure(parse_source(http.url(path), sha), max_bytes=max_mb * MB)
    assert expected.format(port=http.port) in str(caught.value)
    assert list((tmp_path / "fetched").iterdir()) == []
    assert fetcher.snapshot()[-1]["state"] == "failed" and len(http.requests) == 1  # not retried: it cannot help


def test_two_servers_needing_one_model_download_it_once(tmp_path: Path, http: ModelHttpServer) -> None:
    import threading

    http.gate = threading.Event()
    fetcher = ModelFetcher(tmp_path)
    source = parse_source(http.url("/models/yolov8n.onnx"), SHA)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(fetcher.ensure(source, 64 * MB))) for _ in range(2)]
    for thread in threads:
        thread.start()
    http.gate.set()
    for thread in threads:
        thread.join(30)
    assert results == [results[0]] * 2 and results[0].read_bytes() == BLOB and len(http.requests) == 1


def test_an_unreachable_server_is_retried_then_reported(tmp_path: Path, http: ModelHttpServer) -> None:
    url = http.url("/models/yolov8n.onnx")
    http.stop()
    fetcher = ModelFetcher(tmp_path, attempts=2)
    with pytest.raises(ModelFetchError, match=r"cannot reach .* \(after 2 tries; the next try resumes\)") as caught:
        fetcher.ensure(parse_source(url, SHA), max_bytes=64 * MB)
    assert caught.value.retryable  # unlike a 404 or a wrong hash: the node tries again later


def test_fetched_models_no_server_uses_are_bounded(tmp_path: Path, http: ModelHttpServer) -> None:
    blobs = [os.urandom(1000 + i) for i in range(KEEP_UNUSED + 3)]
    in_use: list[Path] = []
    fetcher = ModelFetcher(tmp_path, in_use=lambda: in_use)
    paths = []
    for index, blob in enumerate(blobs):
        http.files[f"/m{index}.onnx"] = blob
        paths.append(fetcher.ensure(parse_source(http.url(f"/m{index}.onnx"), hashlib.sha256(blob).hexdigest()), MB))
        os.utime(paths[-1], (index, 1000 + index))  # a distinct age each
        if index == 0:
            in_use.append(paths[0])  # a server uses the first: never removed
    kept = sorted(p for p in (tmp_path / "fetched").iterdir())
    assert kept == sorted([paths[0], *paths[-(KEEP_UNUSED + 1) :]])


def test_model_url_and_sha_are_checked() -> None:
    assert source_of({"MODEL_URL": ""}) is None
    with pytest.raises(ValueError, match="MODEL_SHA256 is set but MODEL_URL is not"):
        source_of({"MODEL_SHA256": SHA})
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_source("https://example.com/m.onnx", "abc")
    with pytest.raises(ValueError, match="must start with http://, https://, s3://BUCKET/ or s3:"):
        parse_source("ftp://example.com/m.onnx", SHA)
    source = parse_source("https://user:pw@example.com:8443/v2/m.onnx?X-Amz-Signature=secret", SHA.upper())
    assert source.shown == "https://example.com:8443/v2/m.onnx" and source.sha256 == SHA and source.name == "m.onnx"
    assert parse_source("s3:fleet/yolo.onnx", SHA).shown == "s3:fleet/yolo.onnx"
    assert parse_source("s3://models/fleet/yolo.onnx", SHA).bucket == "models"


# --- S3 through the node's storage settings (SeaweedFS) -------------------------------------------------------------
def storage_settings(server: Any) -> StorageSettings:
    return StorageSettings(endpoint=server.endpoint, access_key=server.access_key, secret_key=server.secret_key,
                           bucket=server.bucket, secure=False)  # fmt: skip


def test_a_model_comes_from_s3_and_a_cut_download_resumes(tmp_path: Path, s3_server: Any) -> None:
    import io

    client = s3_server.client()
    if not client.bucket_exists(s3_server.bucket):
        client.make_bucket(s3_server.bucket)
    client.put_object(s3_server.bucket, "fleet/yolov8n.onnx", io.BytesIO(BLOB), len(BLOB))
    settings = storage_settings(s3_server)
    fetcher = ModelFetcher(tmp_path / "a", storage=lambda: settings)
    path = fetcher.ensure(parse_source("s3:fleet/yolov8n.onnx", SHA), 64 * MB)
    assert path.read_bytes() == BLOB

    resumed = ModelFetcher(tmp_path / "b", storage=lambda: settings)  # a node stopped halfway through before
    source = parse_source(f"s3://{s3_server.bucket}/fleet/yolov8n.onnx", SHA)
    part = fetched_path(tmp_path / "b", source).with_name(f"{SHA}.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(BLOB[: len(BLOB) // 2])
    assert resumed.ensure(source, 64 * MB).read_bytes() == BLOB
    assert resumed.snapshot()[0]["resumed_from"] == len(BLOB) // 2

    with pytest.raises(ModelFetchError, match=r"model 'missing\.onnx' from s3:fleet/missing\.onnx: S3 NoSuchKey"):
        fetcher.ensure(parse_source("s3:fleet/missing.onnx", "1" * 64), 64 * MB)  # (SHA is cached by now)
    with pytest.raises(ModelFetchError, match="needs object storage settings"):
        ModelFetcher(tmp_path / "c").ensure(parse_source("s3:fleet/yolov8n.onnx", SHA), 64 * MB)
    assert fetcher.ensure(parse_source("s3:fleet/anything.onnx", SHA), 64 * MB) == path  # same hash: no download
