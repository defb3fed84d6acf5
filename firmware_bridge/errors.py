"""Errors raised by the firmware bridge."""


class BridgeError(Exception):
    """Root of every error the firmware bridge raises; the command line reports it and exits non-zero."""
