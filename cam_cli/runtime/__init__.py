"""Where and how it runs: device and precision, memory, torchrun's process group."""
