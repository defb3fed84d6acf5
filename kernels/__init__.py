"""The cryptographic core of LatticeLock; it imports nothing else of ours and can be audited alone.

Top level, the safe layer:
- `recipe`: enrol a template; match probes against every enrolled user in one unlock attempt
  (`Gallery`, `Attempt`); what the host prepares for the microcontroller's match in hardened mode.
- `params`: the named parameter sets (operating points) with their measured figures.
- `record`: the versioned, checksummed record format; `families`: what each kind of record is and
  what a thief gets from it; `errors`: the one error tree.
- `scheme` with `l2fe`, `unprotected`, `mrp`, `facial_fe`: the paper's schemes behind one interface,
  for evaluations; `kdf`, `projection`: Argon2id/HKDF and the shipped PCA projections.

`hazmat/` below it holds the low-level pieces (decomposed Rep, q-ary lattices and reduction, Babai
and exact-CVP decoders and their GPU twins, seed expansion, secret recovery, security estimates)
for attack and research code. The device never imports it (a test enforces this).
"""
