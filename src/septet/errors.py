"""The errors septet raises for things a user can fix.

Every message says what was wrong and what to do. The CLI prints ``error: <message>`` and
exits with status 2 for any of these; anything else is a bug in septet.
"""


class SeptetError(Exception):
    """Base of every error caused by input, configuration or environment, not by a bug."""

    exit_code = 2


class ConfigError(SeptetError):
    """A configuration value or key is wrong (unknown key, bad type, out of range)."""


class InputError(SeptetError):
    """User data is unreadable or malformed: a file, a video, a volume, a request body."""


class CheckpointError(SeptetError):
    """Model weights do not fit the model: missing or unexpected keys, wrong shapes, bad files."""


class MissingDependencyError(SeptetError):
    """An optional library that this feature needs is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"this feature needs the Python package {module!r}, which is not installed; "
            f"install it with: pip install 'septet[{extra}]'"
        )
        self.module = module
        self.extra = extra


class NotFoundError(SeptetError):
    """A named thing does not exist: a model, a table, a file, a registry entry."""
