"""The live preview of an enrolment: each frame with its face boxes and verdict, as JPEG bytes in memory.

Frames are encoded in memory only (`cv2.imencode`), handed to the operator's page and dropped:
nothing biometric is ever written to disk.
"""

from __future__ import annotations

import cv2
import numpy as np

from latticelock.device.enrol import FrameCheck
from latticelock.device.errors import KioskError

# Replays such as faces94 are 180x200: drawn at that size, a box and its label would be a smudge.
MIN_HEIGHT = 360
GOOD = (60, 180, 75)  # BGR
NOT_GOOD = (0, 160, 255)
JPEG_QUALITY = 80


def annotate(check: FrameCheck) -> bytes:
    """JPEG of the frame with every detected face boxed (green when the frame is good) and the verdict below."""
    image = cv2.cvtColor(check.frame.image, cv2.COLOR_RGB2BGR)
    scale = max(1.0, MIN_HEIGHT / image.shape[0])
    if scale > 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    colour = GOOD if check.verdict == "good" else NOT_GOOD
    for face in check.faces:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in np.asarray(face.box, dtype=np.float64))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 3)
    band = 28
    cv2.rectangle(image, (0, image.shape[0] - band), (image.shape[1], image.shape[0]), (0, 0, 0), -1)
    label = f"{check.verdict}  {check.good}/{check.needed}"
    cv2.putText(image, label, (8, image.shape[0] - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise KioskError("the preview frame could not be encoded as JPEG")
    return encoded.tobytes()
