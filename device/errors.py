"""Errors raised by the device runtime."""


class DeviceError(Exception):
    """Root of every error the device runtime raises; the command line reports it and exits non-zero."""


class SourceError(DeviceError):
    """A frame source cannot be opened or read (unknown URI scheme, missing folder, camera gone)."""


class StoreError(DeviceError):
    """The flash store is unusable: missing, unwritable, or a user name that cannot be stored."""


class StoreVersionError(StoreError):
    """The store was written by a newer or foreign format; it is refused rather than guessed at."""


class CorruptEntryError(StoreError):
    """One stored file fails its magic, version or checksum test; the others stay usable."""


class InsecureSchemeError(StoreError):
    """A record the store's mode does not hold (a baseline, or a plain record in a hardened store)."""


class UnknownUserError(StoreError):
    """No user of that name is enrolled."""


class LockedOutError(DeviceError):
    """Too many failed attempts: unlocking is refused until `retry_after` seconds have passed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EnrolmentError(DeviceError):
    """Enrolment failed: too few good frames, or captures too inconsistent to be one person."""


class ConfigError(DeviceError):
    """A setting is out of range or a configuration file is malformed."""


class KioskError(DeviceError):
    """A kiosk request that cannot be carried out; the message is written for the operator's page."""


class KioskBusyError(KioskError):
    """The device is busy with another enrolment or attempt (one at a time: they share the chip and the camera)."""


class SignInRequiredError(KioskError):
    """The microcontroller's administrator window has closed (or it restarted): the operator must sign in again."""


class ChipUnreachableError(KioskError):
    """The microcontroller does not answer, or its link broke mid-request (the kiosk reconnects at the next one)."""
