"""Start an SDK session on a broker with a fleet behind it; count the fleet's nodes it lists; optionally deploy.

Environment: ``FLEET_ADDRESSES`` (a file, one address a line: the nodes the session must list as active);
``LIST_TIMEOUT`` (seconds to wait for all of them, default 20); ``NODE_ADDRESS`` (optional: a real node to deploy a
small pipeline to and then close it, both confirmed); the broker in ``EE_MQTT_HOST``, ``EE_MQTT_PORT``,
``EE_MQTT_USER``, ``EE_MQTT`` (read by the SDK itself). Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ratio1 import Session

started = time.monotonic()
session = Session(name="fleet-app", run_dauth=False, auto_configuration=False)
session_seconds = time.monotonic() - started
expected = set(Path(os.environ["FLEET_ADDRESSES"]).read_text(encoding="utf-8").split())
deadline = time.monotonic() + float(os.environ.get("LIST_TIMEOUT", "20"))
while True:
    listed = len(expected & set(session.get_active_nodes()))
    if listed == len(expected) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
result: dict[str, object] = {
    "session_seconds": round(session_seconds, 3),
    "expected": len(expected),
    "listed": listed,
    "all_listed_after": round(time.monotonic() - started, 3),
    "active": len(session.get_active_nodes()),
}
node = os.environ.get("NODE_ADDRESS")
if node:
    result["node_online"] = session.wait_for_node(node, timeout=20)
    pipeline = session.create_pipeline(
        node=node, name="fleet-deploy", data_source="SYNTHETIC", config={"MODE": "messages", "CAP_RESOLUTION": 2}
    )
    pipeline.create_plugin_instance(signature="FRAME_STATS", instance_id="fs", config={"REPORT_EVERY": 5})
    pipeline.deploy(wait_confirmation=True, timeout=30)
    result["deployed"] = pipeline.was_last_operation_successful
    pipeline.close()
    result["closed"] = pipeline.was_last_operation_successful
print("RESULT " + json.dumps(result), flush=True)
session.close()
