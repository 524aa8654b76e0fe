"""One exception hierarchy; every message is written for the on-call engineer."""


class BackupError(Exception):
    """Base of every error this tool raises on purpose."""


class ConfigError(BackupError):
    """A setting is missing or wrong; fixing the configuration is the only remedy."""


class TransientError(BackupError):
    """Worth retrying: network hiccups, timeouts, a database that is restarting."""


class PermanentError(BackupError):
    """Retrying cannot help: bad credentials, checksum mismatch, missing tools."""


class NotFoundError(PermanentError):
    """The object, backup or database asked for does not exist."""


class CheckFailed(PermanentError):
    """A backup failed one named check (sha256, decrypt, pg_restore --list, ...)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


class Busy(BackupError):
    """Another run has the database or catalog this run needs, and this one does not wait (or waited too long)."""


class Skipped(Busy):
    """A scheduled run that does not wait found another run at work (its next run comes soon)."""


class Stopped(BackupError):
    """The run was told to stop (SIGTERM: systemd, a timeout, Cancel in the UI) before it finished."""

    def __init__(self) -> None:
        super().__init__(
            "stopped by a termination signal (SIGTERM) before it finished; nothing partial was listed, and the next "
            "run removes what this one left"
        )
