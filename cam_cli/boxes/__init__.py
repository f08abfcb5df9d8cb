"""Boxes from CAMs: the largest connected component, on the CPU and the GPU."""
