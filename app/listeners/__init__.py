"""Listeners: the lab's TCP and UDP servers, started and stopped while the lab runs."""
