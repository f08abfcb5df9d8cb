"""Every error cam-cli raises on purpose, in one hierarchy; a command turns each into one
``cam-cli: error: ...`` line and an exit code chosen by its kind (`cli.options.errors_as_exit`).

Two kinds, never mixed:
- `SetupError` (exit code 2): the inputs or options cannot give a correct run (a missing file,
  weights that do not fit, images and annotations that do not belong together), found before or
  instead of work that would produce wrong figures.
- `RunFailed` (exit code 1): a run that could start went wrong on the way (the loss diverged).

Problems with single images are not errors: they are reported per image and the run goes on.
Messages speak of the library's own arguments, never of command-line flags: an argument is
named in backticks, as the library calls it (```per_image` is not a cam-cli per-image file``),
in errors and in log lines alike. The CLI names the flag instead, from one table
(`cli.options.FLAGS`, `cli.options.as_flags`), so the user reads the option they typed.

Nothing here imports anything, so every layer (and the command line's help) may import it.
"""

from __future__ import annotations


class CamCliError(Exception):
    """The root: anything cam-cli raises to say, in one line, why it cannot go on."""


class SetupError(CamCliError):
    """Options or inputs that cannot work together; the message says what to do."""


class RunFailed(CamCliError):
    """A run that started and could not finish; what it wrote before is kept as it was."""


class ArgumentError(SetupError):
    """An argument with a value it cannot take. ``str()`` names the argument as the library
    calls it (``threshold must be in [0, 1), got 2``); ``argument`` and ``problem`` let a
    front end name it its own way (the CLI: by its flag, from `cli.options.FLAGS`)."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument} {problem}")
        self.argument = argument
        self.problem = problem

    # pickled whole (rank 0's error travels to the other ranks)
    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.argument, self.problem)


class InputFileError(SetupError, ValueError):
    """A file a command reads is not what it must be: not a regular file (a FIFO is never
    waited on), over a reader's bounds (a line, the whole file, JSON nesting), not UTF-8, or
    not of its format. The message names the file (and line) and quotes a short excerpt."""


class ModelLoadError(SetupError):
    """A model could not be set up from the options given; the message says what to do."""


class NotCAMExact(SetupError):
    """A timm model whose head breaks ``mean(M_c) = S_c - b_c``."""


class EvaluationError(SetupError, ValueError):
    """Inputs that do not fit together (every figure would be wrong or silently partial).
    The message says what is wrong and what to do."""


class ConfigError(SetupError, ValueError):
    """A configuration value or file is wrong; the message names the key and the source."""


class TrainError(SetupError):
    """A training run cannot start or go on; the message says what to do."""


class TrainingDiverged(RunFailed):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""
