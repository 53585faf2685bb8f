"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, incompatible checkpoint).

    The message must say what is wrong and how to fix it, in one line.
    """
