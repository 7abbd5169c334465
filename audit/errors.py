"""Sieve's error hierarchy.

Every error a user can cause or fix is an ``AuditError`` whose message names the object
(file, row, value, job) and the fix. The CLI prints it on one line and exits 2; the
dashboard shows it with one helper. Anything else is an internal error and keeps its
traceback.
"""


class AuditError(Exception):
    """A problem the user can fix; the message says what and how."""


class InputError(AuditError):
    """Bad input data: a manifest, an image folder, a supplied array, a path."""


class ConfigError(AuditError):
    """A bad setting, option or audit config."""


class NotFoundError(AuditError):
    """A dataset, run, job or sample that does not exist."""


class StoreLockedError(AuditError):
    """The database file stayed locked by another process for too long."""


class ModelUnavailableError(AuditError):
    """Model weights cannot be loaded (no network, missing checkpoint)."""


class Cancelled(Exception):
    """Raised inside a running audit when its job was asked to stop."""
