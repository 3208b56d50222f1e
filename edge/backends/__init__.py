"""Classifier backends; each registers itself with roadsense.edge.classifier."""
