"""Adapters: the ports implemented with real things (kazoo, the filesystem, prometheus-client, time)."""
