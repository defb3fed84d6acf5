"""Errors raised by the cryptographic core."""


class KernelsError(Exception):
    """Root of every error the cryptographic core raises; the command line reports it and exits non-zero."""
