"""What goes out: records, drawn boxes, CAM files."""
