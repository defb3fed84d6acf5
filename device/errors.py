"""Errors raised by the device runtime."""


class DeviceError(Exception):
    """Root of every error the device runtime raises; the command line reports it and exits non-zero."""
