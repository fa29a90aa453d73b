"""Deploy through Ratio1's SDK a pipeline the node must refuse, and print what the SDK reports (one JSON line).

Environment: ``NODE_ADDRESS``; ``PIPELINE`` (name); ``INSTANCE_CONFIG`` (JSON of the FRAME_STATS instance);
the broker in ``EE_MQTT_HOST``, ``EE_MQTT_PORT``, ``EE_MQTT_USER``, ``EE_MQTT`` (read by the SDK itself).
"""

from __future__ import annotations

import json
import os
import time

from ratio1 import Session

NODE = os.environ["NODE_ADDRESS"]
TIMEOUT = 20  # the SDK's transaction timeout: a node that does not answer shows up as "Transaction timeout"

session = Session(name="sdk-refused", run_dauth=False, auto_configuration=False)
online = session.wait_for_node(NODE, timeout=20)
pipeline = session.create_pipeline(
    node=NODE, name=os.environ["PIPELINE"], data_source="SYNTHETIC", config={"MODE": "messages", "CAP_RESOLUTION": 5}
)
pipeline.create_plugin_instance(
    signature="FRAME_STATS", instance_id="fs", config=json.loads(os.environ.get("INSTANCE_CONFIG", "{}"))
)
started = time.monotonic()
transactions = pipeline.deploy(wait_confirmation=False, timeout=TIMEOUT)
session.wait_for_transactions(transactions)
reasons = [
    str(response.fail_reason)
    for transaction in transactions
    for response in transaction.lst_required_responses
    if response.is_solved() and not response.is_good_response()
]
result = {
    "online": online,
    "peered": session.is_peered(NODE),
    "deployed": pipeline.was_last_operation_successful,
    "answered_in": round(time.monotonic() - started, 2),
    "reasons": reasons,
}
print("RESULT " + json.dumps(result), flush=True)
session.close()
