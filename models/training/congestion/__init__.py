"""Training of the congestion classifier: EfficientNet-Lite0 features and a linear head
(``lite_train`` first), its leave-one-camera-out evaluation and export."""
