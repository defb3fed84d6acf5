// Babai nearest-plane and Schnorr-Euchner closest-vector decoding, one target per thread.
//
// Twins of the numba kernels in kernels/babai.py and kernels/cvp.py: the same float64 operations in
// the same order (built with --fmad=false, as numba does not fuse a*b+c), so the decoded integer
// vectors are identical, ties included.
//
// Two layouts of the reduced basis, chosen at compile time:
//  - ONE basis for all targets (many candidates against one record): element e at p[e]; every thread
//    of a warp reads the same address, which the cache broadcasts.
//  - MANY bases, basis i for target i (1:N identification): element e of basis i at p[e * k + i],
//    so a warp's 32 reads of one element are 32 consecutive words (coalesced).
// Built once per dimension with -DLL_M=<m>, so per-thread arrays have a fixed size.

#ifndef LL_M
#error "compile with -DLL_M=<lattice dimension>"
#endif

constexpr int M = LL_M;

template <bool MANY>
struct Basis {
    const double* __restrict__ proj;      // [M][M] bstar.T / |b*|^2: Gram-Schmidt coordinates x = t @ proj
    const double* __restrict__ sqnorm;    // [M]    |b*_i|^2
    const double* __restrict__ mu;        // [M][M] b_i = b*_i + sum_{j<i} mu[i][j] b*_j
    const long long* __restrict__ basis;  // [M][M] basis vectors b_i (rows)
    long long k;                          // number of targets (the stride of the MANY layout)
    long long i;                          // this thread's target

    __device__ __forceinline__ long long at(int e) const { return MANY ? (long long)e * k + i : (long long)e; }
    __device__ __forceinline__ double p(int r, int c) const { return __ldg(proj + at(r * M + c)); }
    __device__ __forceinline__ double sq(int r) const { return __ldg(sqnorm + at(r)); }
    __device__ __forceinline__ double m_u(int r, int c) const { return __ldg(mu + at(r * M + c)); }
    __device__ __forceinline__ long long b(int r, int c) const { return __ldg(basis + at(r * M + c)); }
};

// x = t @ proj, summed in increasing j (babai.gs_coordinates).
template <bool MANY>
__device__ __forceinline__ void gs_coordinates(const Basis<MANY>& B, const double* __restrict__ t, double* x) {
    for (int i = 0; i < M; ++i) {
        double acc = 0.0;
        for (int j = 0; j < M; ++j) acc += t[j] * B.p(j, i);
        x[i] = acc;
    }
}

// v = sum_r coeff_r b_r in int64 (exact, so the order of the sum is free; zero coefficients skipped).
template <bool MANY>
__device__ __forceinline__ void write_vector(const Basis<MANY>& B, const double* coeff, long long* __restrict__ out) {
    for (int j = 0; j < M; ++j) {
        long long v = 0;
        for (int r = 0; r < M; ++r) {
            const long long cr = (long long)coeff[r];
            if (cr != 0) v += cr * B.b(r, j);
        }
        out[j] = v;
    }
}

// babai._nearest_plane: c_i = floor(x_i + 0.5) from the top, then x_j -= c_i mu[i][j] for j < i.
template <bool MANY>
__device__ void babai(const Basis<MANY>& B, const double* __restrict__ target, long long* __restrict__ out) {
    double x[M];
    double coeff[M];
    gs_coordinates(B, target, x);
    for (int i = M - 1; i >= 0; --i) {
        const double c = floor(x[i] + 0.5);
        coeff[i] = c;
        for (int j = 0; j < i; ++j) x[j] -= c * B.m_u(i, j);
    }
    write_vector(B, coeff, out);
}

// cvp._enumerate with room for one point (cvp._closest): depth-first Schnorr-Euchner enumeration in
// Gram-Schmidt coordinates, siblings in zig-zag order around the centre, the bound shrinking to the best
// squared distance found; ties keep the first point found. Returns the status (COMPLETE or EXHAUSTED).
//
// The CPU caches the centres' partial sums sig[i][k] = x_i - sum_{j>=k} c_j mu[j][i] (fplll's trick).
// Each cached value is the same sequence of subtractions that recomputing it performs, so both give
// the same bits; LL_CENTRE_CACHE picks one: the cache (m*(m+1) doubles of local memory per thread) or
// recomputing x_i - c_{m-1} mu[m-1][i] - ... - c_{i+1} mu[i+1][i] at each descent (no cache).
constexpr int COMPLETE = 0;
constexpr int EXHAUSTED = 1;

#ifndef LL_CENTRE_CACHE
#define LL_CENTRE_CACHE 0
#endif

template <bool MANY>
__device__ int closest(const Basis<MANY>& B, const double* __restrict__ target, double bound, long long max_nodes,
                       double* best, bool* have, long long* nodes_out, long long* terms_out) {
    double x[M], c[M], ctr[M], partial[M + 1];
    int dx[M], ddx[M];
#if LL_CENTRE_CACHE
    double sig[M][M + 1];
    int stale[M];
#endif
    gs_coordinates(B, target, x);
    for (int j = 0; j < M; ++j) {
        c[j] = 0.0;
        ctr[j] = 0.0;
        partial[j] = 0.0;
#if LL_CENTRE_CACHE
        sig[j][M] = x[j];
        stale[j] = M - 1;
#endif
    }
    partial[M] = 0.0;
    double limit = bound;
    double held = 0.0;  // squared distance of the point held
    bool size = false;
    long long nodes = 0;
    long long terms = 0;  // centre terms x_i - c_k mu[k][i] computed: the flop count beyond the nodes
    int status = COMPLETE;
    int i = M - 1;
    ctr[i] = x[i];
    c[i] = floor(ctr[i] + 0.5);
    dx[i] = ctr[i] >= c[i] ? 1 : -1;
    ddx[i] = dx[i];
    for (;;) {
        nodes += 1;
        if (nodes > max_nodes) {
            status = EXHAUSTED;
            break;
        }
        const double diff = c[i] - ctr[i];
        const double d = partial[i + 1] + diff * diff * B.sq(i);
        if (d <= limit) {
            if (i == 0) {
                if (!size || d < held) {
                    for (int j = 0; j < M; ++j) best[j] = c[j];
                    held = d;
                    size = true;
                }
                if (held < limit) limit = held;
                c[0] += dx[0];
                ddx[0] = -ddx[0];
                dx[0] = ddx[0] - dx[0];
                continue;
            }
            partial[i] = d;
            i -= 1;
#if LL_CENTRE_CACHE
            for (int k = stale[i]; k > i; --k) sig[i][k] = sig[i][k + 1] - c[k] * B.m_u(k, i);
            terms += stale[i] - i;
            stale[i] = i;
            ctr[i] = sig[i][i + 1];
#else
            double s = x[i];
            for (int k = M - 1; k > i; --k) s = s - c[k] * B.m_u(k, i);
            terms += M - 1 - i;
            ctr[i] = s;
#endif
            c[i] = floor(ctr[i] + 0.5);
            dx[i] = ctr[i] >= c[i] ? 1 : -1;
            ddx[i] = dx[i];
        } else {
            i += 1;
            if (i == M) break;
            c[i] += dx[i];
            ddx[i] = -ddx[i];
            dx[i] = ddx[i] - dx[i];
#if LL_CENTRE_CACHE
            for (int k = 0; k < i; ++k)
                if (stale[k] < i) stale[k] = i;
#endif
        }
    }
    *have = size;
    *nodes_out = nodes;
    *terms_out = terms;
    return status;
}

template <bool MANY>
__device__ void cvp(const Basis<MANY>& B, const double* __restrict__ target, double bound, long long max_nodes,
                    long long* __restrict__ out, unsigned char* __restrict__ found, unsigned char* __restrict__ status,
                    long long* __restrict__ nodes, long long* __restrict__ terms) {
    double best[M];
    bool have;
    *status = (unsigned char)closest(B, target, bound, max_nodes, best, &have, nodes, terms);
    *found = have ? 1 : 0;
    if (have) {
        write_vector(B, best, out);
    } else {
        for (int j = 0; j < M; ++j) out[j] = 0;
    }
}

#define BABAI_ENTRY(NAME, MANY)                                                                              \
    extern "C" __global__ void NAME(const double* __restrict__ targets, long long k,                         \
                                    const double* __restrict__ proj, const double* __restrict__ mu,          \
                                    const long long* __restrict__ basis, long long* __restrict__ out) {      \
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                \
        if (i >= k) return;                                                                                  \
        babai(Basis<MANY>{proj, nullptr, mu, basis, k, i}, targets + i * M, out + i * M);                    \
    }

#define CVP_ENTRY(NAME, MANY)                                                                                \
    extern "C" __global__ void NAME(const double* __restrict__ targets, long long k, double bound,           \
                                    long long max_nodes, const double* __restrict__ proj,                    \
                                    const double* __restrict__ sqnorm, const double* __restrict__ mu,        \
                                    const long long* __restrict__ basis, long long* __restrict__ out,        \
                                    unsigned char* __restrict__ found, unsigned char* __restrict__ status,   \
                                    long long* __restrict__ nodes, long long* __restrict__ terms) {          \
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                \
        if (i >= k) return;                                                                                  \
        cvp(Basis<MANY>{proj, sqnorm, mu, basis, k, i}, targets + i * M, bound, max_nodes, out + i * M,      \
            found + i, status + i, nodes + i, terms + i);                                                    \
    }

// out[c][r] = in[r][c] for 8-byte words, in 32 x 32 tiles through shared memory (coalesced both ways):
// turns k stacked bases [k][e] into the element-major layout [e][k] on the device.
extern "C" __global__ void transpose8(const unsigned long long* __restrict__ in, unsigned long long* __restrict__ out,
                                      long long rows, long long cols) {
    __shared__ unsigned long long tile[32][33];
    const long long c0 = (long long)blockIdx.x * 32, r0 = (long long)blockIdx.y * 32;
    for (int y = threadIdx.y; y < 32; y += blockDim.y) {
        const long long r = r0 + y, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[y][threadIdx.x] = in[r * cols + c];
    }
    __syncthreads();
    for (int y = threadIdx.y; y < 32; y += blockDim.y) {
        const long long c = c0 + y, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][y];
    }
}

BABAI_ENTRY(babai_one, false)
BABAI_ENTRY(babai_many, true)
CVP_ENTRY(cvp_one, false)
CVP_ENTRY(cvp_many, true)
