"""Vehicle detection as a measuring model: its card, the YOLOX decoding shared by the edge,
the cloud and the evaluation, and the truth and scores that evaluate it."""
