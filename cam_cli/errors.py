"""The one kind of error a command turns into ``cam-cli: error: ...`` and exit code 2.

A `SetupError` means the inputs or options cannot give a correct run (a missing file, weights
that do not fit, images and annotations that do not belong together), found before or instead of
work that would produce wrong figures. Problems with single images are not errors: they are
reported per image and the run goes on.
"""


class SetupError(Exception):
    """Options or inputs that cannot work together; the message says what to do."""
