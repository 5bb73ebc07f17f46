"""Runs: test traffic fired at a target, measured, stored."""
