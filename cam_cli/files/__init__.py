"""Atomic writes, one writer at a time, the checks made before any work."""
