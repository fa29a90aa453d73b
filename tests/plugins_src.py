"""The small test plugins node tests install, and the SYNTHETIC pipelines that feed them.

``payload_plugin("Tick", "TEST_TICK", '{"I": inp.seq}')`` is the source of a business plugin that returns that
payload for every input (the plugin file a user would write, given to ``node_factory(plugins=...)`` or written
into a plugin folder); ``message_pipeline("tick", "TEST_TICK", fps=20)`` is a SYNTHETIC message source at
``fps`` into one instance of it; ``synthetic_pipeline("cam", "FRAME_STATS", {"INSTANCE_ID": "s"}, COUNT=3)``
any SYNTHETIC source (``MODE`` messages unless given) into instances of one plugin. One builder here instead of
a copy per test file and benchmark.
"""

from __future__ import annotations

from typing import Any

PLUGIN_TEMPLATE = """{imports}from edge_engine.api import BusinessPlugin


class {class_name}(BusinessPlugin):
    SIGNATURE = "{signature}"

    def process(self, inp):
        if inp is None:
            return None
        return {payload}
"""


def payload_plugin(class_name: str, signature: str, payload: str, imports: str = "") -> str:
    """Source of a business plugin ``class_name`` (``SIGNATURE = signature``) that returns, for each input, the
    dict written by the Python expression ``payload`` (over ``inp``); ``imports`` (module lines) go first."""
    head = f"{imports.strip()}\n\n" if imports.strip() else ""
    return PLUGIN_TEMPLATE.format(imports=head, class_name=class_name, signature=signature, payload=payload)


def synthetic_pipeline(name: str, signature: str, *instances: dict[str, Any], **capture: Any) -> dict[str, Any]:
    """A SYNTHETIC source (``MODE`` "messages" unless ``capture`` says otherwise; ``capture`` holds the source's
    keys, such as ``CAP_RESOLUTION`` or ``COUNT``) into ``instances`` of ``signature``."""
    source = {"TYPE": "SYNTHETIC", "MODE": "messages", **capture}
    return {"NAME": name, **source, "PLUGINS": [{"SIGNATURE": signature, "INSTANCES": list(instances)}]}


def message_pipeline(name: str, signature: str, fps: int, instance_id: str = "t", **instance: Any) -> dict[str, Any]:
    """A SYNTHETIC message source at ``fps`` into one instance (``instance_id``, config ``instance``) of
    ``signature``."""
    return synthetic_pipeline(name, signature, {"INSTANCE_ID": instance_id, **instance}, CAP_RESOLUTION=fps)
