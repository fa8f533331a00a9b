"""User-facing errors: one line that names the key or path and what was expected."""


class OptrunError(Exception):
    """A problem with the user's input (config, data path, results dir). Printed without a traceback."""

    exit_code = 2


class RunLocked(OptrunError):
    """The run directory is being written by another live process."""

    exit_code = 3
