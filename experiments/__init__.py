"""Experiments: one module per dataset, run with `python -m experiments.<name>`."""
