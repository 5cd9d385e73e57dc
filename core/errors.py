"""One error hierarchy; the CLI turns each into a one-line message and an exit code."""


class RagError(Exception):
    """A domain error whose message is fit to show a user as it is."""

    exit_code = 1


class SettingsError(RagError):
    """A setting (or an input value: an option, a question) is missing or wrong. `field`
    names it; the message starts with it."""

    exit_code = 2

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class StoreError(RagError):
    """The vector store cannot be reached or used."""

    exit_code = 4


class StoreLockedError(StoreError):
    """The embedded store is owned by another running process."""

    exit_code = 3


class LoadError(RagError):
    """One file could not be turned into text; the message is the reason."""


class NotFoundError(RagError):
    """A document (or other resource) that was asked for does not exist."""
