"""User-facing errors: one clear line, non-zero exit, no traceback (see cli.main)."""


class EdgetrackError(Exception):
    """An error caused by user input (a path, a box, a device, a bundle).

    The CLI prints ``str(err)`` as a single line and exits with status 2.
    """
