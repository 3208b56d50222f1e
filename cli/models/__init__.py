"""The model commands: `dataset`, `models`, `train` and `forecast` (code under ``models/``)."""
