"""The root of airtrace's exception tree, shared by every package.

Each error carries policy: ``exit_code`` says what the command line does with it
(2 = the user's input is wrong, 1 = something else failed) and ``retryable`` tells a
supervisor whether trying again can help. Packages subclass these; library exceptions
are translated into them at the adapter's edge, in one place.
"""

from __future__ import annotations

from typing import Any


class AirtraceError(Exception):
    """Base of every error airtrace raises on purpose."""

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class InputError(AirtraceError, ValueError):
    """The user's input (arguments, files, payloads) is wrong; fixing it is the remedy."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration file or value is invalid; the message names the file, key and reason."""


class CodecError(InputError):
    """Bytes or text that do not decode under a wire format."""


class CrcError(CodecError):
    """A frame whose checksum or CRC does not match its content."""
