"""Training a CAM network on image labels: config, data, model, checkpoints, processes, loop."""
