"""Model code, training, export and the shipped artifacts.

Only ``roadsense.models.card`` and ``roadsense.models.shipped`` are imported
by the edge and the cloud; they need no torch. Training and export modules
import torch and belong to the ``train`` extra.
"""
