"""Messages on Ratio1's network: canonical hashing, ECDSA signatures and end-to-end encryption compatible with the
``ratio1`` SDK (:mod:`edge_engine.comms.signing`, :mod:`edge_engine.comms.crypto`), and, built on them, the MQTT
transport that carries heartbeats, payloads, notifications and commands between this node and the network.
"""
