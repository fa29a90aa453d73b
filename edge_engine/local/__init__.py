"""The local cache and what lives in it: the folder layout with atomic JSON writes, the node's key and addresses
(secp256k1, Keccak-256), and the allowlist of senders who may change the node.
"""
