"""Model code, training, export and the shipped artifacts.

The layout is the boundary: everything in ``roadsense.models`` outside ``training`` is
torch-free and may be loaded by the edge and the cloud (cards, calibration, explanations,
engine cache, footage and label tools, LOCO figures); ``roadsense.models.training`` holds
what needs torch (networks, training, export; the ``train`` extra).
``tests/test_layout.py`` fails when the edge, the cloud or a torch-free module imports it.
"""
