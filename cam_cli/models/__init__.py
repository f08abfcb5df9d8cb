"""The model side: the registry of CAM networks, their weights, classes and preprocessing."""
