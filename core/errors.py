"""One error hierarchy; the CLI turns each into a one-line message and an exit code."""


class RagError(Exception):
    """A domain error whose message is fit to show a user as it is."""

    exit_code = 1


class SettingsError(RagError):
    """A setting is missing or wrong; the message names the field."""

    exit_code = 2


class StoreError(RagError):
    """The vector store cannot be reached or used."""


class StoreLockedError(StoreError):
    """The embedded store is owned by another running process."""


class LoadError(RagError):
    """One file could not be turned into text; the message is the reason."""


class NotFoundError(RagError):
    """A document (or other resource) that was asked for does not exist."""
