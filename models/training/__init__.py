"""Everything that needs torch: networks, training, export (the ``train`` extra)."""
