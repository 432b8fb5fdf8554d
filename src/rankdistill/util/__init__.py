"""Plumbing every stage shares: atomic files, progress bars, device probes, YAML configs and their errors."""
