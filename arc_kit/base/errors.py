"""User-facing errors: one line naming the file and the task, never a traceback."""


class ArcKitError(Exception):
    """An error caused by bad input or configuration. The CLI prints `error: <message>` and exits 2.

    The message must be a single line that names the file (and the task, pair or key) at fault.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))


class ConfigValueError(ArcKitError):
    """A config value out of its range, raised by a config dataclass's own checks; config.from_dict adds the
    dotted path of the section, so the message names the full key (`config key 'ttt.train.lr': must be > 0`)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key '{key}': {message}")
        self.key, self.message = key, message
