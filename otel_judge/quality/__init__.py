"""Quality over time: the evaluation store, per-slice estimates, regression detection, the quality API."""
