"""Class activation maps from one forward pass."""
