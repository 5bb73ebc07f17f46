"""Mesh mode: every node measures every peer continuously and shares an all-pairs matrix."""
