"""User-facing errors: one line naming the file and the task, never a traceback."""


class ArcKitError(Exception):
    """An error caused by bad input or configuration. The CLI prints `error: <message>` and exits 2.

    The message must be a single line that names the file (and the task, pair or key) at fault.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))
