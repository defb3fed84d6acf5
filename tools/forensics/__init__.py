"""Stolen-device forensics: what a thief who reads the whole flash recovers, per protection scheme.

image (steal: the flash as a versioned, checksummed image), inspect and records (parse it with no
secret), protocol (identity-disjoint split, threshold, ASR, random-guess baseline), surrogates and
pipe (PIPE step 1 and the algebraic recoveries), inverse (PIPE step 2 in embedding space),
dictionary, lattice_attack (L2FE-Hash), report (all of it on LFW), commands (the CLI).
"""
