/* Strided copies between a decoded chunk and its place in an array, fills with the
 * fill value, and the "is this chunk all fill value" test of writes. */
#include <string.h>

#include "kernel.h"

/* Drop unit extents and merge dimensions that are contiguous on both sides, so most
 * copies become a few long rows. Returns the remaining number of dimensions, or -1
 * when the region is empty. */
static int simplify(const ak_region *in, ak_region *out)
{
    int n = 0;
    for (int d = 0; d < in->ndim; d++) {
        if (in->shape[d] == 0)
            return -1;
        if (in->shape[d] == 1)
            continue;
        if (n > 0 && out->src[n - 1] == in->shape[d] * in->src[d] &&
            out->dst[n - 1] == in->shape[d] * in->dst[d]) {
            out->shape[n - 1] *= in->shape[d];
            out->src[n - 1] = in->src[d];
            out->dst[n - 1] = in->dst[d];
            continue;
        }
        out->shape[n] = in->shape[d];
        out->src[n] = in->src[d];
        out->dst[n] = in->dst[d];
        n++;
    }
    out->ndim = n;
    return n;
}

static inline void swap_item(char *dst, const char *src, int itemsize, int unit)
{
    for (int part = 0; part < itemsize; part += unit) {
        switch (unit) {
        case 2: {
            uint16_t v;
            memcpy(&v, src + part, 2);
            v = __builtin_bswap16(v);
            memcpy(dst + part, &v, 2);
            break;
        }
        case 4: {
            uint32_t v;
            memcpy(&v, src + part, 4);
            v = __builtin_bswap32(v);
            memcpy(dst + part, &v, 4);
            break;
        }
        case 8: {
            uint64_t v;
            memcpy(&v, src + part, 8);
            v = __builtin_bswap64(v);
            memcpy(dst + part, &v, 8);
            break;
        }
        default:
            for (int i = 0; i < unit; i++)
                dst[part + i] = src[part + unit - 1 - i];
        }
    }
}

static void copy_row(char *dst, const char *src, int64_t n, int64_t ds, int64_t ss,
                     int itemsize, int swap_unit)
{
    if (swap_unit) {
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            swap_item(dst, src, itemsize, swap_unit);
        return;
    }
    if (ds == itemsize && ss == itemsize) {
        memcpy(dst, src, (size_t)(n * itemsize));
        return;
    }
    switch (itemsize) {
    case 1:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            *dst = *src;
        break;
    case 2:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            memcpy(dst, src, 2);
        break;
    case 4:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            memcpy(dst, src, 4);
        break;
    case 8:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            memcpy(dst, src, 8);
        break;
    case 16:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            memcpy(dst, src, 16);
        break;
    default:
        for (int64_t i = 0; i < n; i++, dst += ds, src += ss)
            memcpy(dst, src, (size_t)itemsize);
    }
}

void ak_copy(char *dst, const char *src, const ak_region *region, int itemsize, int swap_unit)
{
    ak_region r;
    int nd = simplify(region, &r);
    if (nd < 0)
        return;
    if (nd == 0) {
        copy_row(dst, src, 1, itemsize, itemsize, itemsize, swap_unit);
        return;
    }
    int last = nd - 1;
    int64_t idx[AK_MAX_NDIM] = {0};
    for (;;) {
        copy_row(dst, src, r.shape[last], r.dst[last], r.src[last], itemsize, swap_unit);
        int d = last - 1;
        while (d >= 0) {
            dst += r.dst[d];
            src += r.src[d];
            if (++idx[d] < r.shape[d])
                break;
            dst -= r.dst[d] * r.shape[d];
            src -= r.src[d] * r.shape[d];
            idx[d] = 0;
            d--;
        }
        if (d < 0)
            return;
    }
}

void ak_fill_contiguous(char *dst, size_t nbytes, const unsigned char *pattern, int itemsize)
{
    if (nbytes == 0)
        return;
    int uniform = 1;
    for (int i = 1; i < itemsize; i++)
        uniform &= pattern[i] == pattern[0];
    if (uniform) {
        memset(dst, pattern[0], nbytes);
        return;
    }
    size_t done = (size_t)itemsize < nbytes ? (size_t)itemsize : nbytes;
    memcpy(dst, pattern, done);
    while (done < nbytes) { /* doubling: a few memcpy calls for any size */
        size_t step = done < nbytes - done ? done : nbytes - done;
        memcpy(dst + done, dst, step);
        done += step;
    }
}

void ak_fill(char *dst, const int64_t *strides, const int64_t *shape, int ndim,
             const unsigned char *pattern, int itemsize)
{
    ak_region in, r;
    in.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        in.shape[d] = shape[d];
        in.src[d] = 0; /* no source: dimensions merge where the destination allows */
        in.dst[d] = strides[d];
    }
    int n = simplify(&in, &r);
    if (n < 0)
        return;
    if (n == 0) {
        memcpy(dst, pattern, (size_t)itemsize);
        return;
    }
    int last = n - 1;
    int64_t idx[AK_MAX_NDIM] = {0};
    for (;;) {
        if (r.dst[last] == itemsize) {
            ak_fill_contiguous(dst, (size_t)(r.shape[last] * itemsize), pattern, itemsize);
        } else {
            char *p = dst;
            for (int64_t i = 0; i < r.shape[last]; i++, p += r.dst[last])
                memcpy(p, pattern, (size_t)itemsize);
        }
        int d = last - 1;
        while (d >= 0) {
            dst += r.dst[d];
            if (++idx[d] < r.shape[d])
                break;
            dst -= r.dst[d] * r.shape[d];
            idx[d] = 0;
            d--;
        }
        if (d < 0)
            return;
    }
}

/* -- emptiness ------------------------------------------------------------------------ */

static uint64_t load_bits(const unsigned char *p, int width, int swap)
{
    unsigned char tmp[8];
    if (swap) {
        for (int i = 0; i < width; i++)
            tmp[i] = p[width - 1 - i];
        p = tmp;
    }
    switch (width) {
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    default: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

typedef struct {
    uint64_t sign, exp, mant;
} float_masks;

static float_masks masks_for(int width)
{
    float_masks m;
    switch (width) {
    case 2:
        m.sign = 0x8000u;
        m.exp = 0x7C00u;
        m.mant = 0x03FFu;
        break;
    case 4:
        m.sign = 0x80000000u;
        m.exp = 0x7F800000u;
        m.mant = 0x007FFFFFu;
        break;
    default:
        m.sign = 0x8000000000000000ull;
        m.exp = 0x7FF0000000000000ull;
        m.mant = 0x000FFFFFFFFFFFFFull;
    }
    return m;
}

/* Equal as numbers, NaN matching NaN (as numpy's comparison in the Python path). */
static inline int float_equal(uint64_t x, uint64_t f, float_masks m)
{
    if (x == f)
        return 1;
    if (((x | f) & ~m.sign) == 0)
        return 1; /* +0 and -0 */
    int x_nan = (x & m.exp) == m.exp && (x & m.mant) != 0;
    int f_nan = (f & m.exp) == m.exp && (f & m.mant) != 0;
    return x_nan && f_nan;
}

/* Whether every element of the chunk (contiguous, stored byte order) equals the fill
 * value: bit for bit for integers and booleans, as numbers for floats (each part of a
 * complex number on its own), NaN matching NaN. */
int ak_is_fill(const ak_chain *c, const unsigned char *data, size_t nbytes)
{
    size_t item = (size_t)c->itemsize;
    if (nbytes == 0)
        return 1;
    /* all items bitwise equal to the fill pattern: the common empty chunk */
    if (memcmp(data, c->fill_cmp, item) == 0 &&
        (nbytes == item || memcmp(data + item, data, nbytes - item) == 0))
        return 1;
    if (c->fill_kind == AK_FILL_BITS)
        return 0;
    int width = c->fill_kind == AK_FILL_COMPLEX ? c->itemsize / 2 : c->itemsize;
    if (width != 2 && width != 4 && width != 8)
        return 0;
    int swap = !c->stored_native;
    float_masks m = masks_for(width);
    uint64_t fill[2];
    int parts = c->itemsize / width;
    for (int p = 0; p < parts; p++)
        fill[p] = load_bits(c->fill_cmp + p * width, width, swap);
    for (size_t off = 0; off < nbytes; off += item)
        for (int p = 0; p < parts; p++)
            if (!float_equal(load_bits(data + off + (size_t)(p * width), width, swap), fill[p], m))
                return 0;
    return 1;
}
