"""Errors raised by the cryptographic core.

One root (`KernelsError`) so the command line can report any of them; the subclasses name what went
wrong with a stored record, a parameter set or a call, never which internal check of a verification
failed (a rejected face is `None`, not an exception).
"""


class KernelsError(Exception):
    """Root of every error the cryptographic core raises; the command line reports it and exits non-zero."""


class RecordError(KernelsError):
    """A stored record cannot be used: corrupt, truncated, foreign, a newer format, or another parameter set."""


class ParameterSetError(KernelsError):
    """An unknown or inconsistent parameter set, or a projection file that does not match it."""


class SchemeError(KernelsError):
    """A scheme was called wrongly: an embedding of the wrong shape, or a hardened record without its MAC."""
