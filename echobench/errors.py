"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, incompatible checkpoint).

    The message must say what is wrong and how to fix it, in one line.
    """


class Terminated(BaseException):
    """The process was asked to stop by a signal (SIGTERM); raised by the CLI's handler so that runs, locks and
    temporary files are closed as on Ctrl-C (a BaseException: nothing that catches ``Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
