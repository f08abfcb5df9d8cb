"""cam-cli: Class Activation Mapping (Zhou et al., CVPR 2016), from training to ILSVRC
localization error.

Importing the package is cheap on purpose (no torch import), so the command
line's help answers at once.
"""

__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)
