"""A synthetic localization benchmark in the ILSVRC layout, for the demo and the tests."""
