"""Training, evaluation and export of the GRU traffic-flow forecaster (``forecaster``
first)."""
