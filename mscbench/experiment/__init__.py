"""Experiments: planning runs (identity, code fingerprint), executing them through the run store, and
recipes turned into plans. The CLI calls this layer; it calls train, models, data, eval and results."""
