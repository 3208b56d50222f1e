"""Congestion training data from unlabelled footage: auto-labels, composites, datasets.

Torch-free (numpy and OpenCV only) so that it runs wherever the clip is.
"""
