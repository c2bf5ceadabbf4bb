"""User-facing errors: the CLI prints these as one line, `cvtrain: error: ...`, and exits 2."""


class UserError(Exception):
    """Something the user can fix; the message says how."""


class ConfigError(UserError):
    """A bad override or config value."""


class DataError(UserError):
    """Missing, unreadable or inconsistent data."""
