"""What each family of stored record is, in one place: the store, `forensics inspect`, the forensics
report and the evaluations read these facts from here instead of keeping their own lists.

A family is named by the scheme id in the record's header (`Record.scheme_id`).
"""

from __future__ import annotations

from dataclasses import dataclass

from latticelock.kernels.errors import RecordError


@dataclass(frozen=True)
class SchemeFamily:
    scheme_id: str
    title: str
    stores: str
    """What the record holds, in words."""
    baseline: bool
    """A comparison scheme from the paper's tables: evaluations use it, the device never stores it."""
    flash_thief_gets_face: bool
    """Whether the project's own attacks recover the (projected) face from the stored record alone."""
    needs_mcu: bool
    """Only the microcontroller can check a face against it."""
    why: str
    """The measured reason for `flash_thief_gets_face`."""


FAMILIES: dict[str, SchemeFamily] = {
    f.scheme_id: f
    for f in (
        SchemeFamily(
            "unprotected", "unprotected embedding", "the 512-d embedding itself",
            baseline=True, flash_thief_gets_face=True, needs_mcu=False,
            why="the embedding is stored in the clear",
        ),
        SchemeFamily(
            "mrp", "MRP (random projection)", "a random projection of the embedding and the projection's seed",
            baseline=True, flash_thief_gets_face=True, needs_mcu=False,
            why="the projection is invertible from what is stored (algebraic attack, 100%)",
        ),
        SchemeFamily(
            "facial-fe", "Facial-FE (E8 code offset)", "the code-offset helper data and a hash",
            baseline=True, flash_thief_gets_face=True, needs_mcu=False,
            why="the helper data is the embedding minus a lattice codeword (PIPE and algebraic attacks, 100%)",
        ),
        SchemeFamily(
            "l2fe-hash", "L2FE-Hash, plain", "lattice seed, helper vector c = A s + e, salt, Argon2id verifier; at "
            "the device's points the record's two radii, which give |e| and link the person's records",
            baseline=False, flash_thief_gets_face=True, needs_mcu=False,
            why="exact CVP at c minus the public mean face returns A s, hence e, for one Argon2id (lattice attack, 100%); "
            "the radii give |e|, so wrong candidates cost no Argon2id",
        ),
        SchemeFamily(
            "l2fe-hash-mcu", "L2FE-Hash, hardened (matched on the microcontroller)",
            "the device lattice's id and the helper vector c sealed (AEAD) under a key only the microcontroller holds",
            baseline=False, flash_thief_gets_face=False, needs_mcu=True,
            why="without the microcontroller's key the sealed c is ciphertext; with the device whole, the "
            "microcontroller answers only accept or reject per counted attempt",
        ),
    )
}


def family(scheme_id: str) -> SchemeFamily:
    """The family of a record's scheme id (RecordError for one this build does not know)."""
    try:
        return FAMILIES[scheme_id]
    except KeyError:
        raise RecordError(f"unknown record scheme {scheme_id!r}; known: {', '.join(FAMILIES)}") from None
