"""What an owner configures: the node's settings (startup and app configs, ``EE_*``), every ``EE_*`` setting declared
once with its type, default, bounds and doc (:mod:`.settings_schema`, read by every part and generating
``.env.template`` and ``docs/settings.md``), pipeline JSON validated into immutable specs, and Ratio1's documented
keys accepted untouched.
"""
