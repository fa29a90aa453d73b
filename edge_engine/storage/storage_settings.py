"""Object storage settings: ``FILE_UPLOAD`` of ``.config_app.json`` (Ratio1's shape) and ``EE_MINIO_*``.

``FILE_UPLOAD: {"TYPE": "minio", "CONFIG_UPLOADER": {"ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "BUCKET_NAME",
"SECURE"}}`` as in Ratio1 (``CONFIG`` is accepted for ``CONFIG_UPLOADER``), plus our optional keys ``REGION``,
``PREFIX``, ``URL_MODE``, ``URL_EXPIRY_SECONDS``, ``CREATE_BUCKET``, ``PUBLIC_ENDPOINT`` and
``MAX_QUEUE_MB``. ``$EE_*`` references are replaced from the environment, and ``EE_MINIO_*`` variables win
over the file (as for comms). Storage is configured when an endpoint and a bucket are known.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_engine import constants as C
from edge_engine.comms.comms_settings import resolve_env_ref, set_from_file
from edge_engine.config.settings_schema import MAX_PRESIGN_SECONDS, UPLOADER, by_file_key
from edge_engine.errors import ConfigIssue

WHERE = f"{C.APP_CONFIG_FILE} › FILE_UPLOAD"

# file key -> (attribute, kind, environment variable); types, bounds and defaults are declared in the schema
ATTRIBUTES: dict[str, str] = {
    "ENDPOINT": "endpoint",
    "ACCESS_KEY": "access_key",
    "SECRET_KEY": "secret_key",
    "BUCKET_NAME": "bucket",
    "SECURE": "secure",
    "REGION": "region",
    "PREFIX": "prefix",
    "URL_MODE": "url_mode",
    "URL_EXPIRY_SECONDS": "url_expiry_seconds",
    "CREATE_BUCKET": "create_bucket",
    "PUBLIC_ENDPOINT": "public_endpoint",
    "MAX_QUEUE_MB": "max_queue_mb",
}
SCHEMA = by_file_key("storage")
FIELDS: dict[str, tuple[str, str, str]] = {key: (ATTRIBUTES[key], s.kind, s.name) for key, s in SCHEMA.items()}
ENV_FIELDS = {env: (attr, kind) for attr, kind, env in FIELDS.values()}


@dataclass
class StorageSettings:
    """Where uploads go and what URL a payload carries."""

    endpoint: str | None = None  # host[:port]; a scheme (http://, https://) also sets ``secure``
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    bucket: str | None = None
    secure: bool = True
    region: str = "us-east-1"  # set, so URLs are made locally (no bucket-location request)
    prefix: str = ""
    url_mode: str = "presigned"
    url_expiry_seconds: int = MAX_PRESIGN_SECONDS
    create_bucket: bool = True
    public_endpoint: str | None = None  # host[:port] (or URL) consumers reach; defaults to ``endpoint``
    max_queue_mb: int = 1024

    @property
    def configured(self) -> bool:
        return bool(self.endpoint and self.bucket)

    def describe(self) -> dict[str, Any]:
        """What may be shown (local_info, heartbeats): no credentials."""
        return {
            "configured": self.configured,
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "secure": self.secure,
            "prefix": self.prefix,
            "url_mode": self.url_mode,
        }


def split_endpoint(text: str, secure: bool) -> tuple[str, bool]:
    """``host[:port]`` and the secure flag from an endpoint that may carry a scheme (and a trailing path)."""
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith("https://"):
        text, secure = text[8:], True
    elif lowered.startswith("http://"):
        text, secure = text[7:], False
    return text.split("/", 1)[0], secure


def load_storage_settings(
    app: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[StorageSettings, list[ConfigIssue]]:
    """Build the storage settings from the app config and the environment; every problem is returned, a bad value
    in the schema's one form (:meth:`edge_engine.config.settings_schema.Setting.issue`)."""
    env = os.environ if env is None else env
    settings = StorageSettings()
    issues: list[ConfigIssue] = []
    upload = app.get("FILE_UPLOAD") or {}
    if not isinstance(upload, dict):
        issues.append(ConfigIssue("expected an object", file=".config_app.json", key="FILE_UPLOAD"))
        upload = {}
    kind = str(resolve_env_ref(upload.get("TYPE"), env) or "minio").strip().lower()
    if kind not in ("minio", "s3"):
        issues.append(ConfigIssue("expected minio (any S3-compatible server)", file=WHERE, key="TYPE", got=kind))
    params = upload.get("CONFIG_UPLOADER", upload.get("CONFIG")) or {}
    params = params if isinstance(params, dict) else {}
    for key, raw in params.items():
        if key not in SCHEMA:
            close = difflib.get_close_matches(str(key), list(SCHEMA), n=1)
            issues.append(
                ConfigIssue(
                    "unknown key", file=UPLOADER, key=str(key), hint=f"did you mean {close[0]!r}?" if close else None
                )
            )
            continue
        set_from_file(settings, ATTRIBUTES[key], SCHEMA[key], raw, env, issues)
    for key, setting in SCHEMA.items():
        value = setting.read(env, issues)
        if value is not None:
            setattr(settings, ATTRIBUTES[key], value)
    if settings.endpoint:
        settings.endpoint, settings.secure = split_endpoint(settings.endpoint, settings.secure)
    issues.extend(_pairs(settings))
    return settings, issues


def _pairs(s: StorageSettings) -> list[ConfigIssue]:
    """Values that only work together."""
    issues: list[ConfigIssue] = []
    if bool(s.endpoint) != bool(s.bucket):
        missing = "BUCKET_NAME (EE_MINIO_UPLOAD_BUCKET)" if s.endpoint else "ENDPOINT (EE_MINIO_ENDPOINT)"
        issues.append(ConfigIssue(f"object storage half configured: {missing} is missing", file=WHERE))
    if s.configured and not (s.access_key and s.secret_key) and (s.access_key or s.secret_key):
        issues.append(ConfigIssue("ACCESS_KEY and SECRET_KEY go together", file=WHERE))
    return issues
