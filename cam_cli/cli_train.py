"""Placeholder: filled in by its command's module."""
