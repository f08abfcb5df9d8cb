"""Image files -> (logits, features) -> CAMs -> boxes -> records, files and pictures."""
