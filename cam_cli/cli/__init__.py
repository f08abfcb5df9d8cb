"""The command line: one module per command, shared options, and the entry point (`main`)."""
