"""What comes in: images, batches, decoding, class lists, ground truth, map files."""
