"""Stolen-device forensics: what a thief who reads the whole flash recovers, per protection scheme.

Theft: image (steal: the flash as a versioned, checksummed image), inspect and records (parse it
with no secret; which families leak the face comes from `latticelock.kernels.families`).
Protocol: protocol (identity-disjoint split, threshold, ASR, the paper's random-guess baseline).
Attacks: surrogates and pipe (PIPE step 1, the algebraic recoveries), inverse (step 2 in embedding
space), generator, generator_net, crops and pipe_image (step 2 in image space: a face generator
trained on public faces, its faces embedded again), dictionary, lattice_attack (L2FE-Hash).
Reports: report (every attack on LFW), tables (the paper's tables by name, and ours), figures (ASR
plots, face grids), html (one self-contained page), fleet (a simulated fleet stolen on Ray).
The command line: commands.
"""
