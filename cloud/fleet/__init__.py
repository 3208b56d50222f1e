"""FleetService: the device registry, enrollment by claim and revocation (``rpc.py``, start
here).
"""
