"""The pipeline runtime: capture loops, the serving stage, business instances, their mailboxes, the supervisor that
restarts failed parts and the watchdog, and the node-less sandbox that ``edge-node dry-run`` and the test harness use.
"""
