"""Sinks: where released metrics, run summaries and record outputs land."""
