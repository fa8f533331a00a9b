"""User-facing errors: one line that names the key or path and what was expected."""


class OptrunError(Exception):
    """A problem with the user's input (config, data path, results dir). Printed without a traceback."""

    exit_code = 2
