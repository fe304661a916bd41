"""Error types of the data slice.

``DataError`` is bad input or a failed operation the user can act on; the CLI prints it as one
line ``error: ...`` on stderr and exits with code 2 (SLICES.md, isolation rule 5).
Provider errors subclass it so that a provider failure that escapes failover is reported the
same way.
"""


class DataError(Exception):
    """Bad input or a failed operation; the message names what and where (file, symbol, time).

    ``warnings``: lines the CLI prints as ``warning:`` before the error (e.g. the symbols that
    were excluded before none was left)."""

    def __init__(self, message: str = "", warnings: list[str] | None = None):
        super().__init__(message)
        self.warnings = list(warnings or [])


class ProviderError(DataError):
    """A provider could not serve a request (not retried unless it is ``TransientProviderError``)."""


class TransientProviderError(ProviderError):
    """Timeout, connection failure, HTTP 5xx or 429: retried with exponential backoff."""


class AuthError(ProviderError):
    """Missing or rejected credentials: never retried."""


class UnknownSymbolError(ProviderError):
    """The provider does not know the symbol: never retried."""


class EmptyResponseError(ProviderError):
    """The provider answered but returned no bars for the requested range."""


class NetworkUnreachableError(ProviderError):
    """The provider's host cannot be resolved (offline): not retried, the next provider is tried."""
