"""Model rollouts: the controller (``controller.py``, start here), its plan, steps, canary
verdict, rows and RPCs.
"""
