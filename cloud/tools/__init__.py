"""Operator tools the service never runs: check, snapshot, forecast export and replay."""
