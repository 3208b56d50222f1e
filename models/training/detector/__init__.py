"""Training of the vehicle detector: the ONNX detector fine-tuned in torch and exported
again (``train`` first)."""
