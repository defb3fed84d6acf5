"""Errors raised by the host-side tools."""


class ToolsError(Exception):
    """Root of every error the host-side tools raises; the command line reports it and exits non-zero."""
