"""Commands an operator sends a device: remote configuration and snapshots."""
