"""Errors raised by the contract readers. Each message is one line naming the
problem and the fix, so the CLI can print it as it is."""


class ContractError(ValueError):
    """A manifest or outputs file is missing, malformed or inconsistent."""


class SchemaVersionError(ContractError):
    """The file was written by a newer, incompatible lepton-cdk."""


class ChecksumMismatchError(ContractError):
    """An artifact on disk does not match the checksum the manifest records."""
