"""age encryption of streams (pyrage); keys are standard age X25519 keys usable with the `age` CLI."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import pyrage
from pyrage import x25519

from sppg_backup.errors import ConfigError, PermanentError, Stopped


def recipients(keys: list[str]) -> list[x25519.Recipient]:
    parsed = []
    for key in keys:
        try:
            parsed.append(x25519.Recipient.from_str(key))
        except pyrage.RecipientError:
            raise ConfigError(
                f"bad setting SPPG_BACKUP_AGE_RECIPIENTS: {key[:16]}... is not a valid age public key"
            ) from None
    return parsed


def load_identities(path: Path) -> list[x25519.Identity]:
    """Read an age identity file (as written by age-keygen): AGE-SECRET-KEY-... lines, # comments."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"bad setting SPPG_BACKUP_AGE_IDENTITY_FILE: cannot read {path}: {exc.strerror}") from None
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                identities.append(x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                raise ConfigError(
                    f"bad setting SPPG_BACKUP_AGE_IDENTITY_FILE: {path} holds a line that is not an age key"
                ) from None
    if not identities:
        raise ConfigError(f"bad setting SPPG_BACKUP_AGE_IDENTITY_FILE: {path} holds no age key")
    return identities


def encrypt(source: IO[bytes], sink: Any, keys: list[str]) -> None:
    """Stream `source` into `sink` encrypted to every recipient."""
    try:
        pyrage.encrypt_io(source, sink, recipients(keys))
    except pyrage.EncryptError as exc:
        if str(exc).startswith("TerminationSignal"):  # Prefect's SIGTERM, raised inside pyrage's read callback
            raise Stopped() from None
        raise


def identities_from(path: Path | None) -> list[x25519.Identity]:
    """The private keys of AGE_IDENTITY_FILE, which reading anything encrypted needs."""
    if path is None:
        raise ConfigError(
            "bad setting SPPG_BACKUP_AGE_IDENTITY_FILE: not set; point it at the private key file "
            "(the one `sppg-backup keygen` wrote) to read encrypted backups"
        )
    return load_identities(path)


def check_identities(identities: list[x25519.Identity], recipients: list[str], what: str) -> None:
    """The key can open `what` (made for `recipients`), or a ConfigError naming both: a wrong key is a setting to
    fix, not a damaged backup."""
    if not recipients:
        return
    ours = {str(identity.to_public()) for identity in identities}
    if not ours & set(recipients):
        raise ConfigError(
            f"bad setting SPPG_BACKUP_AGE_IDENTITY_FILE: its key ({', '.join(sorted(ours))[:24]}...) is not one "
            f"{what} was encrypted to ({', '.join(recipients)[:24]}...); use the matching private key"
        )


def decrypt(source: IO[bytes], sink: Any, identities: list[x25519.Identity]) -> None:
    try:
        pyrage.decrypt_io(source, sink, identities)
    except OSError as exc:
        if exc.errno is not None:  # the destination failed (disk full...), not the decryption
            raise
        raise PermanentError("cannot decrypt: the encrypted data is damaged (age authentication failed)") from None
    except pyrage.DecryptError as exc:
        if str(exc).startswith("TerminationSignal"):
            raise Stopped() from None
        raise PermanentError(
            f"cannot decrypt: {exc}; is SPPG_BACKUP_AGE_IDENTITY_FILE the key the backup was made for?"
        ) from None


def generate_key_file(path: Path) -> str:
    """Write a new identity file like age-keygen does; return its public key."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(f"# public key: {public}\n{identity}\n")
    return public
