"""Training: the loop every model goes through (trainer.py) and data-parallel training (distributed.py)."""
