"""What an owner configures: the node's settings (startup and app configs, ``EE_*``), pipeline JSON validated into
immutable specs, and Ratio1's documented keys accepted untouched.
"""
