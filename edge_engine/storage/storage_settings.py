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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_engine.comms.comms_settings import resolve_env_ref
from edge_engine.config.node_settings import env_issue
from edge_engine.errors import ConfigIssue

URL_MODES = ("presigned", "plain")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the S3 limit of a presigned URL's lifetime
MAX_PREFIX_CHARS = 60  # the quoted key names a file: at most 255 bytes
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
WHERE = ".config_app.json › FILE_UPLOAD"

# file key -> (attribute, kind, environment variable)
FIELDS: dict[str, tuple[str, str, str]] = {
    "ENDPOINT": ("endpoint", "str", "EE_MINIO_ENDPOINT"),
    "ACCESS_KEY": ("access_key", "str", "EE_MINIO_ACCESS_KEY"),
    "SECRET_KEY": ("secret_key", "str", "EE_MINIO_SECRET_KEY"),
    "BUCKET_NAME": ("bucket", "str", "EE_MINIO_UPLOAD_BUCKET"),
    "SECURE": ("secure", "bool", "EE_MINIO_SECURE"),
    "REGION": ("region", "str", "EE_MINIO_REGION"),
    "PREFIX": ("prefix", "str", "EE_MINIO_PREFIX"),
    "URL_MODE": ("url_mode", "str", "EE_MINIO_URL_MODE"),
    "URL_EXPIRY_SECONDS": ("url_expiry_seconds", "int", "EE_MINIO_URL_EXPIRY"),
    "CREATE_BUCKET": ("create_bucket", "bool", "EE_MINIO_CREATE_BUCKET"),
    "PUBLIC_ENDPOINT": ("public_endpoint", "str", "EE_MINIO_PUBLIC_ENDPOINT"),
    "MAX_QUEUE_MB": ("max_queue_mb", "int", "EE_UPLOAD_QUEUE_MAX_MB"),
}
ENV_FIELDS = {env: (attr, kind) for attr, kind, env in FIELDS.values()}
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


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


def _parse(kind: str, value: Any) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise ValueError("expected true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
    return str(value).strip()


def load_storage_settings(
    app: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> tuple[StorageSettings, list[ConfigIssue]]:
    """Build the storage settings from the app config and the environment; every problem is returned."""
    env = os.environ if env is None else env
    settings = StorageSettings()
    issues: list[ConfigIssue] = []
    upload = app.get("FILE_UPLOAD") or {}
    if not isinstance(upload, dict):
        issues.append(ConfigIssue("expected an object", file=".config_app.json", key="FILE_UPLOAD"))
        upload = {}
    kind = str(resolve_env_ref(upload.get("TYPE"), env) or "minio").strip().lower()
    if kind not in ("minio", "s3"):
        issues.append(ConfigIssue("expected minio (any S3-compatible server)", file=WHERE, key="TYPE", got=kind,
                                  has_got=True))  # fmt: skip
    params = upload.get("CONFIG_UPLOADER", upload.get("CONFIG")) or {}
    params = params if isinstance(params, dict) else {}
    from_env: dict[str, str] = {}  # attribute -> the text of the variable that set it: its problems name both
    for key, raw in params.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), list(FIELDS), n=1)
            issues.append(ConfigIssue("unknown key", file=f"{WHERE} › CONFIG_UPLOADER", key=str(key),
                                      hint=f"did you mean {close[0]!r}?" if close else None))  # fmt: skip
            continue
        _apply(settings, key, resolve_env_ref(raw, env), f"{WHERE} › CONFIG_UPLOADER", issues)
    for name, (attr, _kind) in ENV_FIELDS.items():
        text = env.get(name)
        if text:
            key = next(k for k, (a, _, _) in FIELDS.items() if a == attr)
            _apply(settings, key, text, "environment", issues, label=name)
            from_env[attr] = text
    if settings.endpoint:
        settings.endpoint, settings.secure = split_endpoint(settings.endpoint, settings.secure)
    settings.url_mode = settings.url_mode.lower()
    issues.extend(_check(settings, from_env))
    return settings, issues


def _apply(
    settings: StorageSettings, key: str, value: Any, file: str, issues: list[ConfigIssue], label: str | None = None
) -> None:
    if value is None or value == "":
        return
    attr, kind, _ = FIELDS[key]
    try:
        setattr(settings, attr, _parse(kind, value))
    except ValueError as exc:
        if label is not None:
            issues.append(env_issue(label, value, str(exc), secret="SECRET" in label))
        else:
            issues.append(ConfigIssue(str(exc), file=file, key=key, got=value, has_got=True))


def _check(s: StorageSettings, from_env: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """Problems of the combined values; one that came from an ``EE_MINIO_*`` variable names the variable."""
    from_env = from_env or {}

    def bad(message: str, key: str, value: Any) -> ConfigIssue:
        attr, _, variable = FIELDS[key]
        if attr in from_env:
            return env_issue(variable, from_env[attr], message)
        return ConfigIssue(message, file=WHERE, key=key, got=value, has_got=True)

    issues: list[ConfigIssue] = []
    if bool(s.endpoint) != bool(s.bucket):
        missing = "BUCKET_NAME (EE_MINIO_UPLOAD_BUCKET)" if s.endpoint else "ENDPOINT (EE_MINIO_ENDPOINT)"
        issues.append(ConfigIssue(f"object storage half configured: {missing} is missing", file=WHERE))
    if s.bucket and not _BUCKET.match(s.bucket):
        issues.append(bad("not a valid S3 bucket name (3-63 of a-z 0-9 . -)", "BUCKET_NAME", s.bucket))
    if s.url_mode not in URL_MODES:
        issues.append(bad("expected presigned or plain", "URL_MODE", s.url_mode))
    if not 1 <= s.url_expiry_seconds <= MAX_PRESIGN_SECONDS:
        issues.append(bad(f"expected 1 to {MAX_PRESIGN_SECONDS} seconds (the S3 limit)", "URL_EXPIRY_SECONDS",
                          s.url_expiry_seconds))  # fmt: skip
    if len(s.prefix) > MAX_PREFIX_CHARS or s.prefix.startswith("/"):
        issues.append(bad(f"at most {MAX_PREFIX_CHARS} characters, not starting with /", "PREFIX", s.prefix))
    if s.max_queue_mb < 1:
        issues.append(bad("expected at least 1", "MAX_QUEUE_MB", s.max_queue_mb))
    if s.configured and not (s.access_key and s.secret_key) and (s.access_key or s.secret_key):
        issues.append(ConfigIssue("ACCESS_KEY and SECRET_KEY go together", file=WHERE))
    return issues
