"""Errors raised by the firmware bridge.

Three families, so a caller can tell "the wire is broken" from "the bytes are wrong" from "the
microcontroller said no":

- `LinkError`: the port could not be opened or used, or no answer came in time (`LinkTimeoutError`).
- `ProtocolError`: bytes that are not a valid frame or message (bad COBS, CRC, length, version,
  unknown type, malformed payload, an answer of the wrong type).
- `McuError`: a well-formed ERROR answer from the microcontroller, with its code; the refusals a
  caller acts on have their own classes (`RejectedError`, `LockedOutError`, ...).
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the firmware bridge raises; the command line reports it and exits non-zero."""


class LinkError(BridgeError):
    """The serial link could not be opened, read or written."""


class LinkTimeoutError(LinkError, TimeoutError):
    """No valid answer arrived before the deadline."""


class ProtocolError(BridgeError):
    """Bytes on the link that break the protocol."""


class FrameError(ProtocolError):
    """A frame that cannot be decoded: bad COBS, too short, or a body that fails its checks."""


class ChecksumError(FrameError):
    """A frame whose CRC-32 does not match its body."""


class OversizeFrameError(FrameError):
    """More bytes than the largest legal frame arrived before a delimiter; they were discarded."""


class VersionError(FrameError):
    """A frame carrying a protocol version this implementation does not speak.

    Its CRC was valid, so `seq` is trustworthy and the answer can be tied to the request.
    """

    def __init__(self, message: str, seq: int = 0) -> None:
        super().__init__(message)
        self.seq = seq


class MessageError(ProtocolError):
    """A message whose payload is malformed, or a field out of range when encoding."""


class UnknownMessageError(MessageError):
    """A frame whose message type is not defined by the protocol."""


class StateError(BridgeError):
    """The simulator's persistent state is unreadable, corrupt or from another format version."""


class McuError(BridgeError):
    """The microcontroller answered with an ERROR message."""

    def __init__(self, code: int, name: str, detail: str, retry_after: float = 0.0) -> None:
        text = f"microcontroller refused: {name}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)
        self.code = code
        self.name = name
        self.detail = detail
        self.retry_after = retry_after


class RejectedError(McuError):
    """A record the microcontroller refused (not this chip's, user's or generation's; one reason for all)."""


class SessionError(McuError):
    """No session is open: never opened, ended by a decision, replaced, or expired."""


class PasscodeRequiredError(McuError):
    """Faces are refused until the device passcode is entered (after a restart or too many failures)."""


class WrongPasscodeError(McuError):
    """The passcode was wrong; `retry_after` says how long the next guess must wait."""


class NotAuthorisedError(McuError):
    """An administrator's request without the device passcode (or before one is set)."""


class CollisionError(McuError):
    """The face being enrolled unlocks another user's record; nothing was enrolled."""


class NotProvisioningError(McuError):
    """An enrolment command arrived while the microcontroller was not in provisioning mode."""


class LockedOutError(McuError):
    """Too many failed attempts; `retry_after` says in how many seconds the next one is allowed."""

    def __init__(self, code: int, name: str, detail: str, retry_after: float = 0.0) -> None:
        super().__init__(code, name, detail, retry_after)
        self.args = (f"{self.args[0]}; retry in {retry_after:.0f} s",)
