"""Low-level lattice and decoding primitives: for attack and research code only.

Nothing here decides whether a face is accepted on its own, keeps secrets out of logs or memory,
or checks that its inputs belong together: a decoder returns the nearest lattice point to any
target, `rep.L2FERep` exposes each step of Rep separately (so a caller can decode without checking
the verifier, or test secrets in bulk, as the forensics attacks do), and `security` estimates
attack costs. Device and application code uses `latticelock.kernels.recipe` instead; the device
package must never import this one (tests/test_layering.py enforces it).
"""
