"""GPU twins of the numba decoders (CUDA C through PyCUDA), batched one thread per target.

`available()` says whether they can run here (PyCUDA installed and a CUDA device present) and
`unavailable_reason()` why not. The four decoders take and return exactly what their CPU twins in
`latticelock.kernels.hazmat.babai` and `latticelock.kernels.hazmat.cvp` do, and return identical integer vectors;
callers normally reach them through `latticelock.kernels.hazmat.decode` rather than directly.
Importing this package does not import PyCUDA.
"""

from latticelock.kernels.hazmat.gpu.launch import babai_decode, babai_decode_many, cvp_decode, cvp_decode_many
from latticelock.kernels.hazmat.gpu.runtime import available, unavailable_reason

__all__ = [
    "available",
    "unavailable_reason",
    "babai_decode",
    "cvp_decode",
    "babai_decode_many",
    "cvp_decode_many",
]
