"""Classifier backends; each registers itself with roadsense.edge.backends.classifier."""
