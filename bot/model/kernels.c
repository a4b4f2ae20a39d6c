/* A Gemma 3 decode step for int8 weights on AVX2 CPUs (loaded by bot/model/native.py).

   torch's int8 kernel reads the weights at about a third of this machine's bandwidth, and a
   decode step of a 270M model is ~1,000 small torch ops whose dispatch costs as much as the
   arithmetic. One call here runs every layer of a step; the matrix-vector products are split
   over the threads of the OpenMP runtime that torch already loaded (the same libgomp.so.1), so
   no second thread pool competes for the cores.

   The arithmetic follows bot/model/fast.py's torch path operation by operation, including
   where that path rounds: the int8 kernel there takes bfloat16 activations and returns bfloat16
   results, so inputs and outputs of each product are rounded to bfloat16 here too. What differs
   is only the order of the float32 sums. */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Reading rows ahead: without it the products read memory at 14 GB/s on the 2-core AMD EPYC of
   bench/NOTES.md, with it at 33-38 GB/s (a sum's read rate there: 30 GB/s). The hardware prefetcher
   alone does not follow four interleaved row streams far enough. Prefetches never fault, so
   those past the matrix's end are harmless. */
#define PREFETCH_ROWS 8

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

static float gelu_tanh(float x) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(beta * (x + kappa * x * x * x)));
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

/* One token through `n` layers at position `pos`: x (hidden) is updated in place and the
   layers' caches get this token's key and value. `cos_*`/`sin_*` are the RoPE rows of `pos`
   (sin already [-sin, sin], as fast.py keeps it). `scratch` holds
   2*hidden + max(inter, heads*head_dim) + (heads+2)*head_dim + (heads+1)*head_dim
   + heads*head_dim + 2*inter + (pos+1) floats; head_dim is at most 512. */
void mb_step(const mb_layer *layers, int n, const mb_dims *d, float *x, int pos,
             const float *cos_local, const float *sin_local, const float *cos_global, const float *sin_global,
             float *scratch) {
    const int H = d->hidden, hd = d->head_dim, heads = d->heads, inter = d->inter, half = hd / 2;
    const int qkv_rows = (heads + 2) * hd, qk_width = (heads + 1) * hd;
    float *xn = scratch, *tmp = xn + H, *xr = tmp + H;              /* xr: rounded inputs, up to inter */
    float *qkv = xr + (inter > heads * hd ? inter : heads * hd);
    float *qk = qkv + qkv_rows, *attn = qk + qk_width, *gu = attn + heads * hd, *scores = gu + 2 * inter;
    for (int l = 0; l < n; l++) {
        const mb_layer *L = &layers[l];
        rms_norm(x, L->norm_in, xn, H, d->eps);
        matvec(L->qkv, L->qkv_s, xn, xr, qkv, qkv_rows, H, d->threads);
        const float *cs = L->sliding ? cos_local : cos_global, *sn = L->sliding ? sin_local : sin_global;
        for (int h = 0; h <= heads; h++) { /* q's heads and k: normed per head, scaled, rotated */
            float *src = qkv + h * hd, *dst = qk + h * hd;
            float nrm[512];
            rms_norm(src, 0, nrm, hd, d->eps);
            for (int i = 0; i < hd; i++) nrm[i] *= L->norm_qk[h * hd + i];
            for (int i = 0; i < hd; i++) {
                float rolled = nrm[i < half ? i + half : i - half];
                dst[i] = nrm[i] * cs[i] + rolled * sn[i];
            }
        }
        memcpy(L->k + (long)pos * hd, qk + heads * hd, hd * sizeof(float));
        memcpy(L->v + (long)pos * hd, qkv + qk_width, hd * sizeof(float));
        int low = L->sliding && pos + 1 > d->window ? pos + 1 - d->window : 0;
        int len = pos + 1 - low;
        for (int h = 0; h < heads; h++) {
            const float *q = qk + h * hd;
            float top = -INFINITY, total = 0.0f;
            for (int j = 0; j < len; j++) {
                scores[j] = dot(q, L->k + (long)(low + j) * hd, hd);
                if (scores[j] > top) top = scores[j];
            }
            for (int j = 0; j < len; j++) {
                scores[j] = expf(scores[j] - top);
                total += scores[j];
            }
            float *out = attn + h * hd;
            memset(out, 0, hd * sizeof(float));
            for (int j = 0; j < len; j++) {
                const float p = scores[j] / total, *vj = L->v + (long)(low + j) * hd;
                for (int i = 0; i < hd; i++) out[i] += p * vj[i];
            }
        }
        matvec(L->o, L->o_s, attn, xr, tmp, H, heads * hd, d->threads);
        rms_norm(tmp, L->norm_post_attn, tmp, H, d->eps);
        for (int i = 0; i < H; i++) x[i] += tmp[i];
        rms_norm(x, L->norm_pre_ff, xn, H, d->eps);
        matvec(L->gate_up, L->gate_up_s, xn, xr, gu, 2 * inter, H, d->threads);
        for (int i = 0; i < inter; i++) gu[i] = gelu_tanh(gu[i]) * gu[inter + i];
        matvec(L->down, L->down_s, gu, xr, tmp, H, inter, d->threads);
        rms_norm(tmp, L->norm_post_ff, tmp, H, d->eps);
        for (int i = 0; i < H; i++) x[i] += tmp[i];
    }
}
