"""What goes out: records, drawn boxes, CAM files, and the runs of `bbox`, `cam` and
`boxes` that write them."""
