/* A Gemma 3 decode step for int8 weights on AVX2 CPUs (loaded by bot/model/native.py).

   torch's int8 kernel reads the weights at about a third of this machine's bandwidth, and a
   decode step of a 270M model is ~1,000 small torch ops whose dispatch costs as much as the
   arithmetic. One call here runs every layer of a step; the matrix-vector products are split
   over the threads of the OpenMP runtime that torch already loaded (the same libgomp.so.1), so
   no second thread pool competes for the cores.

   The arithmetic follows bot/model/fast.py's torch path operation by operation, including
   where that path rounds: its int8 kernel takes bfloat16 activations and returns bfloat16
   results, so inputs and outputs of each product are rounded to bfloat16 here too. For a decode
   step and prompts of up to 64 tokens what differs is then the order of the float32 sums and
   the exp inside gelu and softmax (a polynomial here, torch's own there). Prompts of 65 to 128
   tokens run here too, still rounded, where torch's path multiplies them unrounded (a dense
   matmul on the unpacked weights): the same accuracy class, other bits. */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Reading rows ahead: without it the products read memory at 14 GB/s on the 2-core AMD EPYC of
   bench/NOTES.md, with it at 33-38 GB/s (a sum's read rate there: 30 GB/s). The hardware prefetcher
   alone does not follow four interleaved row streams far enough. Prefetches never fault, so
   those past the matrix's end are harmless. */
#define PREFETCH_ROWS 8
#define HEAD_DIM_LIMIT 512 /* bot/model/native.py HEAD_DIM_LIMIT */

static inline float bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f; /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                /* round to nearest, ties to even */
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 widen(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static float dot(const float *a, const float *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y[r] = bf16(bf16(scale[r]) * (w[r] . x)) for rows [lo, hi); x is already rounded to bf16 */
static void rows_dot(const int8_t *w, const float *scales, const float *x, float *y, long lo, long hi, int cols) {
    long r = lo;
    int body = cols & ~15;
    for (; r + 4 <= hi; r += 4) {
        const int8_t *w0 = w + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int c = 0; c < body; c += 16) {
            __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
            if ((c & 63) == 0) { /* the 4 rows two blocks ahead, 256 bytes of them per 64 columns */
                const char *ahead = (const char *)w0 + PREFETCH_ROWS * (long)cols + 4L * c;
                _mm_prefetch(ahead, _MM_HINT_T0);
                _mm_prefetch(ahead + 64, _MM_HINT_T0);
                _mm_prefetch(ahead + 128, _MM_HINT_T0);
                _mm_prefetch(ahead + 192, _MM_HINT_T0);
            }
            a0 = _mm256_fmadd_ps(widen(w0 + c), x0, a0);
            b0 = _mm256_fmadd_ps(widen(w0 + c + 8), x1, b0);
            a1 = _mm256_fmadd_ps(widen(w1 + c), x0, a1);
            b1 = _mm256_fmadd_ps(widen(w1 + c + 8), x1, b1);
            a2 = _mm256_fmadd_ps(widen(w2 + c), x0, a2);
            b2 = _mm256_fmadd_ps(widen(w2 + c + 8), x1, b2);
            a3 = _mm256_fmadd_ps(widen(w3 + c), x0, a3);
            b3 = _mm256_fmadd_ps(widen(w3 + c + 8), x1, b3);
        }
        float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
        float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
        for (int c = body; c < cols; c++) {
            s0 += w0[c] * x[c];
            s1 += w1[c] * x[c];
            s2 += w2[c] * x[c];
            s3 += w3[c] * x[c];
        }
        y[r] = bf16(s0 * scales[r]);
        y[r + 1] = bf16(s1 * scales[r + 1]);
        y[r + 2] = bf16(s2 * scales[r + 2]);
        y[r + 3] = bf16(s3 * scales[r + 3]);
    }
    for (; r < hi; r++) {
        const int8_t *w0 = w + r * cols;
        __m256 a0 = _mm256_setzero_ps();
        int c = 0;
        for (; c + 8 <= cols; c += 8) a0 = _mm256_fmadd_ps(widen(w0 + c), _mm256_loadu_ps(x + c), a0);
        float s = hsum(a0);
        for (; c < cols; c++) s += w0[c] * x[c];
        y[r] = bf16(s * scales[r]);
    }
}

/* y = bf16 rounding of (bf16(x) @ (w * scales).T), one vector x of `cols`; rows split over
   `threads`. `xr` is scratch of `cols` floats for the rounded input. */
static void matvec(const int8_t *w, const float *scales, const float *x, float *xr, float *y, long rows, int cols, int threads) {
    for (int c = 0; c < cols; c++) xr[c] = bf16(x[c]);
    if (threads <= 1 || rows < 64) {
        rows_dot(w, scales, xr, y, 0, rows, cols);
        return;
    }
    #pragma omp parallel num_threads(threads)
    {
        extern int omp_get_thread_num(void);
        extern int omp_get_num_threads(void);
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        long share = ((rows + n - 1) / n + 3) & ~3L; /* multiples of 4 rows: the 4-row loop */
        long lo = id * share, hi = lo + share < rows ? lo + share : rows;
        if (lo < hi) rows_dot(w, scales, xr, y, lo, hi, cols);
    }
}

/* K rows of x (K <= 4, a constant where inlined) against two weight rows: each 8 weight columns
   are widened once and used K times. */
static inline __attribute__((always_inline)) void block(const int K, const int8_t *w0, const int8_t *w1, const float *x,
                                                        int cols, float s[4][2]) {
    __m256 acc[4][2];
    int body = cols & ~7;
    for (int k = 0; k < K; k++) acc[k][0] = acc[k][1] = _mm256_setzero_ps();
    for (int c = 0; c < body; c += 8) {
        __m256 v0 = widen(w0 + c), v1 = widen(w1 + c);
        for (int k = 0; k < K; k++) {
            __m256 t = _mm256_loadu_ps(x + (long)k * cols + c);
            acc[k][0] = _mm256_fmadd_ps(v0, t, acc[k][0]);
            acc[k][1] = _mm256_fmadd_ps(v1, t, acc[k][1]);
        }
    }
    for (int k = 0; k < K; k++) {
        s[k][0] = hsum(acc[k][0]);
        s[k][1] = hsum(acc[k][1]);
        for (int c = body; c < cols; c++) {
            s[k][0] += w0[c] * x[(long)k * cols + c];
            s[k][1] += w1[c] * x[(long)k * cols + c];
        }
    }
}

/* Y[m][r] = bf16(scale[r] * (w[r] . x[m])) for the m < M rows of x (already rounded), weight rows
   [lo, hi); y's rows are `rows` apart. A short prompt reads and widens each weight once. */
static void rows_dot_many(const int8_t *w, const float *scales, const float *x, float *y, long rows,
                          int M, long lo, long hi, int cols) {
    for (long r = lo; r < hi; r += 2) {
        const int two = r + 1 < hi;
        const int8_t *w0 = w + r * cols, *w1 = two ? w0 + cols : w0;
        for (int c = 0; c < 2 * cols; c += 64) _mm_prefetch((const char *)w0 + PREFETCH_ROWS * (long)cols + c, _MM_HINT_T0);
        for (int m = 0; m < M; m += 4) {
            float s[4][2];
            const float *xm = x + (long)m * cols;
            int K = M - m < 4 ? M - m : 4;
            switch (K) { /* constant K: each case is its own unrolled loop */
                case 4: block(4, w0, w1, xm, cols, s); break;
                case 3: block(3, w0, w1, xm, cols, s); break;
                case 2: block(2, w0, w1, xm, cols, s); break;
                default: block(1, w0, w1, xm, cols, s); break;
            }
            for (int k = 0; k < K; k++) {
                y[(long)(m + k) * rows + r] = bf16(s[k][0] * scales[r]);
                if (two) y[(long)(m + k) * rows + r + 1] = bf16(s[k][1] * scales[r + 1]);
            }
        }
    }
}

/* Y = bf16 rounding of (bf16(X) @ (w * scales).T) for the M rows of X (a short prompt); `xr` is
   scratch of M * cols floats. */
void mb_matmat(const int8_t *w, const float *scales, const float *x, float *xr, float *y, int M, long rows, int cols,
               int threads) {
    for (long i = 0; i < (long)M * cols; i++) xr[i] = bf16(x[i]);
    if (threads <= 1 || rows < 64) {
        rows_dot_many(w, scales, xr, y, rows, M, 0, rows, cols);
        return;
    }
    #pragma omp parallel num_threads(threads)
    {
        extern int omp_get_thread_num(void);
        extern int omp_get_num_threads(void);
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        long share = ((rows + n - 1) / n + 1) & ~1L; /* even: the 2-row loop */
        long lo = id * share, hi = lo + share < rows ? lo + share : rows;
        if (lo < hi) rows_dot_many(w, scales, xr, y, rows, M, lo, hi, cols);
    }
}

/* the exported product: rows of an int8 matrix against one vector (the output shortlist) */
void mb_matvec(const int8_t *w, const float *scales, const float *x, float *xr, float *y, long rows, int cols, int threads) {
    matvec(w, scales, x, xr, y, rows, cols, threads);
}

/* torch.nn.functional.rms_norm(x, weight, eps), weight optional */
static void rms_norm(const float *x, const float *weight, float *out, int n, float eps) {
    float ss = dot(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = weight ? x[i] * r * weight[i] : x[i] * r;
}

/* exp(x) for 8 floats: Cephes' polynomial (relative error about 2e-7), the exponent built in the
   float's bits; x clamped where exp would overflow or go subnormal */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* out[i] = gelu_tanh(g[i]) * up[i]. gelu's tanh form 0.5x(1 + tanh(u)) is x / (1 + exp(-2u)):
   one vector exp instead of a scalar tanhf, which took about 0.5 of the 1.8 ms a prompt token
   cost (12 layers, measured on the 2-core AMD EPYC) */
static void gelu_mul(const float *g, const float *up, float *out, int n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f; /* sqrt(2/pi) */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 u = _mm256_mul_ps(_mm256_set1_ps(beta),
                                 _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kappa), x), _mm256_mul_ps(x, x), x));
        __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
        __m256 gelu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(gelu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float x = g[i];
        out[i] = 0.5f * x * (1.0f + tanhf(beta * (x + kappa * x * x * x))) * up[i];
    }
}

/* softmax of n scores in place, as torch.softmax: exp(s - max) / sum */
static void softmax(float *s, int n) {
    float top = -INFINITY, total = 0.0f;
    for (int j = 0; j < n; j++) top = s[j] > top ? s[j] : top;
    int j = 0;
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(top)));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    total = hsum(acc);
    for (; j < n; j++) {
        s[j] = expf(s[j] - top);
        total += s[j];
    }
    const float inv = 1.0f / total;
    for (j = 0; j < n; j++) s[j] *= inv;
}

typedef struct {
    const int8_t *qkv, *o, *gate_up, *down; /* int8 rows, fused as in bot/model/fast.py */
    const float *qkv_s, *o_s, *gate_up_s, *down_s; /* per-row scales, already rounded to bf16 */
    const float *norm_in, *norm_qk, *norm_post_attn, *norm_pre_ff, *norm_post_ff;
    float *k, *v; /* this layer's key/value cache, [length][head_dim] */
    int sliding;
} mb_layer;

typedef struct {
    int hidden, heads, head_dim, inter, window, threads;
    float eps;
} mb_dims;

/* X = bf16 rounding of (bf16(X) @ (w * scales).T) for M rows: one row through the matrix-vector
   kernel (4 weight rows at a time), several through the one that widens each weight once */
static void product(const int8_t *w, const float *scales, const float *x, float *xr, float *y, int M, long rows, int cols,
                    int threads) {
    if (M == 1) matvec(w, scales, x, xr, y, rows, cols, threads);
    else mb_matmat(w, scales, x, xr, y, M, rows, cols, threads);
}

/* `count` tokens at positions start.. through `n` layers, as fast.py's forward(): x (count rows of
   hidden) is updated in place, and the layers' caches get the tokens' keys and values (positions
   before `start` must be there already). `cos_*`/`sin_*` are the RoPE tables from position 0 (sin
   already [-sin, sin], as fast.py keeps it). `collect[l]`, where not NULL, receives x after layer
   l. `scratch` holds mb_scratch_floats(d, count, start + count) floats. */
long mb_scratch_floats(const mb_dims *d, int count, int positions) {
    long H = d->hidden, hd = d->head_dim, heads = d->heads, inter = d->inter;
    long widest = inter > heads * hd ? inter : heads * hd; /* the products' widest input */
    widest = widest > H ? widest : H;
    return count * (2 * H + widest + (heads + 2) * hd + (heads + 1) * hd + heads * hd + 2 * inter) + positions;
}

int mb_forward(const mb_layer *layers, int n, const mb_dims *d, float *x, int count, int start,
               const float *cos_local, const float *sin_local, const float *cos_global, const float *sin_global,
               float **collect, float *scratch) {
    const int H = d->hidden, hd = d->head_dim, heads = d->heads, inter = d->inter, half = hd / 2;
    const int qkv_rows = (heads + 2) * hd, qk_width = (heads + 1) * hd, q_width = heads * hd;
    long widest = inter > q_width ? inter : q_width;
    widest = widest > H ? widest : H;
    if (hd > HEAD_DIM_LIMIT || count < 1) return -1; /* one head lives in a stack array below */
    float *xn = scratch, *tmp = xn + (long)count * H, *xr = tmp + (long)count * H;
    float *qkv = xr + count * widest, *qk = qkv + (long)count * qkv_rows, *attn = qk + (long)count * qk_width;
    float *gu = attn + (long)count * q_width, *scores = gu + (long)count * 2 * inter;
    for (int l = 0; l < n; l++) {
        const mb_layer *L = &layers[l];
        const float *cs = L->sliding ? cos_local : cos_global, *sn = L->sliding ? sin_local : sin_global;
        for (int t = 0; t < count; t++) rms_norm(x + (long)t * H, L->norm_in, xn + (long)t * H, H, d->eps);
        product(L->qkv, L->qkv_s, xn, xr, qkv, count, qkv_rows, H, d->threads);
        for (int t = 0; t < count; t++) {
            const int pos = start + t;
            const float *row = qkv + (long)t * qkv_rows;
            for (int h = 0; h <= heads; h++) { /* q's heads and k: normed per head, scaled, rotated */
                float nrm[HEAD_DIM_LIMIT], *dst = qk + (long)t * qk_width + h * hd;
                rms_norm(row + h * hd, 0, nrm, hd, d->eps);
                for (int i = 0; i < hd; i++) nrm[i] *= L->norm_qk[h * hd + i];
                for (int i = 0; i < hd; i++) {
                    float rolled = nrm[i < half ? i + half : i - half];
                    dst[i] = nrm[i] * cs[(long)pos * hd + i] + rolled * sn[(long)pos * hd + i];
                }
            }
            memcpy(L->k + (long)pos * hd, qk + (long)t * qk_width + heads * hd, hd * sizeof(float));
            memcpy(L->v + (long)pos * hd, row + qk_width, hd * sizeof(float));
        }
        for (int t = 0; t < count; t++) { /* each token sees the keys up to its own position */
            const int pos = start + t;
            const int low = L->sliding && pos + 1 > d->window ? pos + 1 - d->window : 0, len = pos + 1 - low;
            for (int h = 0; h < heads; h++) {
                const float *q = qk + (long)t * qk_width + h * hd;
                for (int j = 0; j < len; j++) scores[j] = dot(q, L->k + (long)(low + j) * hd, hd);
                softmax(scores, len);
                float *out = attn + (long)t * q_width + h * hd;
                memset(out, 0, hd * sizeof(float));
                for (int j = 0; j < len; j++) {
                    const float p = scores[j], *vj = L->v + (long)(low + j) * hd;
                    for (int i = 0; i < hd; i++) out[i] += p * vj[i];
                }
            }
        }
        product(L->o, L->o_s, attn, xr, tmp, count, H, q_width, d->threads);
        for (int t = 0; t < count; t++) {
            float *xt = x + (long)t * H, *ot = tmp + (long)t * H;
            rms_norm(ot, L->norm_post_attn, ot, H, d->eps);
            for (int i = 0; i < H; i++) xt[i] += ot[i];
            rms_norm(xt, L->norm_pre_ff, xn + (long)t * H, H, d->eps);
        }
        product(L->gate_up, L->gate_up_s, xn, xr, gu, count, 2 * inter, H, d->threads);
        for (int t = 0; t < count; t++) { /* gelu(gate) * up, packed into the first `inter` of each row */
            float *g = gu + (long)t * 2 * inter;
            gelu_mul(g, g + inter, gu + (long)t * inter, inter);
        }
        product(L->down, L->down_s, gu, xr, tmp, count, H, inter, d->threads);
        for (int t = 0; t < count; t++) {
            float *xt = x + (long)t * H, *dt = tmp + (long)t * H;
            rms_norm(dt, L->norm_post_ff, dt, H, d->eps);
            for (int i = 0; i < H; i++) xt[i] += dt[i];
        }
        if (collect && collect[l]) memcpy(collect[l], x, (long)count * H * sizeof(float));
    }
    return 0;
}
