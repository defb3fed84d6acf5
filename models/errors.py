"""Errors raised by perception (model files, detection, embedding)."""


class ModelsError(Exception):
    """Root of every error perception (model files, detection, embedding) raises; the command line reports it and exits non-zero."""


class ImageError(ModelsError):
    """An image that cannot be used: unreadable, corrupt, empty, not an image, or an array of the wrong shape or dtype."""
