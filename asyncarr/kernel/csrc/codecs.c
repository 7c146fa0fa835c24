/* Bounded decoders and the encoders of the chains the kernel takes.
 *
 * Every decoder writes exactly the chunk's decoded size or fails: a frame whose
 * header claims more is refused before any output is produced, a stream that would
 * inflate past the chunk is stopped one byte later, and the messages match what the
 * Python codecs (asyncarr.codecs) say for the same faults. The library calls are the
 * ones numcodecs makes, so the bytes are the same. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <blosc.h>
#include <lz4.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "kernel.h"

static int too_large(ak_result *r, const char *codec, unsigned long long size, size_t limit)
{
    (void)codec;
    ak_fail(r, AK_ERR_CODEC, 0,
            "decoded data would be at least %llu bytes, more than the expected at most "
            "%zu bytes (corrupt data or a decompression bomb)",
            size, limit);
    return r->status;
}

static int wrong_size(ak_result *r, const char *codec, size_t expected, unsigned long long got)
{
    (void)codec;
    ak_fail(r, AK_ERR_CODEC, 0, "decoded chunk has the wrong size: expected %zu bytes, got %llu",
            expected, got);
    return r->status;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* -- zstd -------------------------------------------------------------------------------- */

static int decode_zstd(const ak_chain *c, ak_tstate *ts, const unsigned char *src, size_t n,
                       unsigned char *dst, ak_result *r)
{
    size_t expected = c->nbytes;
    unsigned long long fcs = ZSTD_getFrameContentSize(src, n);
    if (fcs == ZSTD_CONTENTSIZE_ERROR) {
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt zstd data: not a zstd frame (%zu bytes)", n);
        return r->status;
    }
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs > expected)
        return too_large(r, "zstd", fcs, expected);
    if (ts->dctx == NULL && (ts->dctx = ZSTD_createDCtx()) == NULL)
        return ak_fail_nomem(r);
    /* every frame (known size or not, skippable ones too) into exactly the chunk */
    size_t got = ZSTD_decompressDCtx(ts->dctx, dst, expected, src, n);
    if (ZSTD_isError(got)) {
        if (ZSTD_getErrorCode(got) == ZSTD_error_dstSize_tooSmall)
            return too_large(r, "zstd", (unsigned long long)expected + 1, expected);
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt zstd data: %s", ZSTD_getErrorName(got));
        return r->status;
    }
    if (got != expected)
        return wrong_size(r, "zstd", expected, got);
    return AK_OK;
}

static int encode_zstd(const ak_chain *c, ak_tstate *ts, const unsigned char *src,
                       unsigned char *out, size_t cap, size_t *len, ak_result *r)
{
    if (ts->cctx == NULL && (ts->cctx = ZSTD_createCCtx()) == NULL)
        return ak_fail_nomem(r);
    ZSTD_CCtx *cctx = ts->cctx;
    size_t err = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(err))
        err = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, c->level);
    if (!ZSTD_isError(err))
        err = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, c->checksum);
    if (!ZSTD_isError(err))
        err = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(err))
        err = ZSTD_compress2(cctx, out, cap, src, c->nbytes);
    if (ZSTD_isError(err)) {
        ak_fail(r, AK_ERR_CODEC, 0, "zstd compression failed: %s", ZSTD_getErrorName(err));
        return r->status;
    }
    *len = err;
    return AK_OK;
}

/* -- blosc (the blosc1 format that numcodecs and zarr write) ------------------------------- */

static int decode_blosc(const ak_chain *c, const unsigned char *src, size_t n,
                        unsigned char *dst, ak_result *r)
{
    size_t expected = c->nbytes;
    if (n < BLOSC_MIN_HEADER_LENGTH) {
        ak_fail(r, AK_ERR_CODEC, 0,
                "not a blosc frame: %zu bytes is shorter than the 16-byte header", n);
        return r->status;
    }
    unsigned flags = src[2];
    uint32_t nbytes = le32(src + 4), cbytes = le32(src + 12);
    if (cbytes < BLOSC_MIN_HEADER_LENGTH) {
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt blosc header (cbytes=%u)", cbytes);
        return r->status;
    }
    if (cbytes > n) {
        ak_fail(r, AK_ERR_CODEC, 0, "truncated blosc frame: header says %u bytes, got %zu",
                cbytes, n);
        return r->status;
    }
    if ((flags & BLOSC_MEMCPYED) && (uint64_t)cbytes != (uint64_t)nbytes + 16) {
        ak_fail(r, AK_ERR_CODEC, 0,
                "corrupt blosc header: stored uncompressed, but %u != %u + 16 bytes", cbytes,
                nbytes);
        return r->status;
    }
    if (nbytes > expected)
        return too_large(r, "blosc", nbytes, expected);
    if (nbytes != expected)
        return wrong_size(r, "blosc", expected, nbytes);
    if (expected == 0)
        return AK_OK; /* c-blosc reports decoding an empty frame as an error */
    int got = blosc_decompress_ctx(src, dst, expected, 1);
    if (got <= 0) {
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt blosc data: error during blosc decompression: %d",
                got);
        return r->status;
    }
    if ((size_t)got != expected)
        return wrong_size(r, "blosc", expected, (unsigned long long)got);
    return AK_OK;
}

static int encode_blosc(const ak_chain *c, const unsigned char *src, unsigned char *out,
                        size_t cap, size_t *len, ak_result *r)
{
    int got = blosc_compress_ctx(c->level, c->shuffle, (size_t)c->typesize, c->nbytes, src, out,
                                 cap, c->cname, (size_t)c->blocksize, 1);
    if (got <= 0) {
        ak_fail(r, AK_ERR_CODEC, 0, "blosc compression failed: error during blosc compression: %d",
                got);
        return r->status;
    }
    *len = (size_t)got;
    return AK_OK;
}

/* -- lz4 (numcodecs framing: a little-endian uint32 size, then one LZ4 block) ------------- */

static int decode_lz4(const ak_chain *c, const unsigned char *src, size_t n, unsigned char *dst,
                      ak_result *r)
{
    size_t expected = c->nbytes;
    if (n < 4) {
        ak_fail(r, AK_ERR_CODEC, 0, "%zu bytes is too short for numcodecs lz4 data", n);
        return r->status;
    }
    uint32_t nbytes = le32(src);
    if (nbytes > expected)
        return too_large(r, "lz4", nbytes, expected);
    if (nbytes == 0)
        return expected == 0 ? AK_OK : wrong_size(r, "lz4", expected, 0);
    if ((uint64_t)nbytes > 255 * (uint64_t)n + 64) {
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt lz4 header: claims %u bytes from %zu", nbytes, n);
        return r->status;
    }
    if (nbytes > INT_MAX || n - 4 > INT_MAX) {
        ak_fail(r, AK_ERR_CODEC, 0, "lz4 data too large for one block (%zu bytes)", n);
        return r->status;
    }
    int got = LZ4_decompress_safe((const char *)src + 4, (char *)dst, (int)(n - 4), (int)nbytes);
    if (got <= 0) {
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt lz4 data: LZ4 decompression error: %d", got);
        return r->status;
    }
    if ((uint32_t)got != nbytes) {
        ak_fail(r, AK_ERR_CODEC, 0,
                "corrupt lz4 data: LZ4 decompression error: expected to decompress %u, got %d",
                nbytes, got);
        return r->status;
    }
    if (nbytes != expected)
        return wrong_size(r, "lz4", expected, nbytes);
    return AK_OK;
}

static int encode_lz4(const ak_chain *c, const unsigned char *src, unsigned char *out,
                      size_t cap, size_t *len, ak_result *r)
{
    if (c->nbytes > LZ4_MAX_INPUT_SIZE || cap < 4) {
        ak_fail(r, AK_ERR_CODEC, 0, "lz4 cannot compress %zu bytes in one block", c->nbytes);
        return r->status;
    }
    uint32_t size = (uint32_t)c->nbytes;
    out[0] = (unsigned char)size;
    out[1] = (unsigned char)(size >> 8);
    out[2] = (unsigned char)(size >> 16);
    out[3] = (unsigned char)(size >> 24);
    size_t room = cap - 4 > INT_MAX ? INT_MAX : cap - 4;
    int got = LZ4_compress_fast((const char *)src, (char *)out + 4, (int)size, (int)room,
                                c->level > 0 ? c->level : 1);
    if (got <= 0) {
        ak_fail(r, AK_ERR_CODEC, 0, "lz4 compression failed: LZ4 compression error: %d", got);
        return r->status;
    }
    *len = (size_t)got + 4;
    return AK_OK;
}

/* -- gzip and zlib ------------------------------------------------------------------------ */

#define PIECE ((size_t)1 << 30) /* zlib counts in 32-bit units: feed it at most this a call */

/* Point zlib's next window (*next, *avail) at the next piece of [*at, *at + *left). */
static void next_piece(Bytef **next, uInt *avail, const unsigned char **at, size_t *left)
{
    *next = (Bytef *)*at;
    *avail = (uInt)(*left < PIECE ? *left : PIECE);
    *at += *avail;
    *left -= *avail;
}

/* Inflate one stream (a gzip member or a zlib stream) from *src into dst[*total..expected],
 * stopping one byte past expected. Advances *src / *n past the stream. */
static int inflate_one(const unsigned char **src, size_t *n, unsigned char *dst, size_t expected,
                       size_t *total, int gzip, ak_result *r)
{
    const char *fmt = gzip ? "gzip" : "zlib";
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK)
        return ak_fail_nomem(r);
    const unsigned char *in = *src;
    size_t in_left = *n, out_left = expected - *total;
    unsigned char *out = dst + *total, spare;
    int probing = 0, status = AK_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_left)
            next_piece(&zs.next_in, &zs.avail_in, &in, &in_left);
        if (zs.avail_out == 0) {
            if (out_left) {
                next_piece(&zs.next_out, &zs.avail_out, (const unsigned char **)&out, &out_left);
            } else if (!probing) { /* the chunk is full: is there more? */
                probing = 1;
                zs.next_out = &spare;
                zs.avail_out = 1;
            } else {
                status = too_large(r, fmt, (unsigned long long)expected + 1, expected);
                break;
            }
        }
        int ret = inflate(&zs, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
            if (probing && zs.avail_out == 0)
                status = too_large(r, fmt, (unsigned long long)expected + 1, expected);
            break;
        }
        if (ret == Z_OK)
            continue;
        if (ret == Z_BUF_ERROR) { /* no progress possible */
            if (zs.avail_in == 0 && in_left == 0) {
                ak_fail(r, AK_ERR_CODEC, 0, "truncated %s data", fmt);
                status = r->status;
                break;
            }
            if (zs.avail_out == 0)
                continue;
        }
        if (ret == Z_MEM_ERROR) {
            status = ak_fail_nomem(r);
            break;
        }
        ak_fail(r, AK_ERR_CODEC, 0, "corrupt %s data: %s", fmt,
                zs.msg ? zs.msg : (ret == Z_NEED_DICT ? "needs a dictionary" : "invalid data"));
        status = r->status;
        break;
    }
    if (status == AK_OK) {
        size_t consumed = (size_t)(in - *src) - zs.avail_in;
        *src += consumed;
        *n -= consumed;
        *total = probing ? expected : (size_t)(zs.next_out - dst);
    }
    inflateEnd(&zs);
    return status;
}

static int decode_deflate(const ak_chain *c, const unsigned char *src, size_t n,
                          unsigned char *dst, int gzip, ak_result *r)
{
    size_t expected = c->nbytes, total = 0;
    for (;;) {
        int st = inflate_one(&src, &n, dst, expected, &total, gzip, r);
        if (st != AK_OK)
            return st;
        if (!gzip)
            break; /* bytes after a zlib stream are not looked at (as zlib.decompressobj) */
        while (n && *src == 0) { /* gzip allows zero padding between and after members */
            src++;
            n--;
        }
        if (n == 0)
            break;
        if (n < 2 || src[0] != 0x1f || src[1] != 0x8b) {
            ak_fail(r, AK_ERR_CODEC, 0, "trailing garbage after the gzip data");
            return r->status;
        }
    }
    if (total != expected)
        return wrong_size(r, gzip ? "gzip" : "zlib", expected, total);
    return AK_OK;
}

static int encode_deflate(const ak_chain *c, const unsigned char *src, unsigned char *out,
                          size_t cap, size_t *len, int gzip, ak_result *r)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* the parameters of Python's zlib.compress (and gzip.compress with mtime=0) */
    int ret = deflateInit2(&zs, c->level, Z_DEFLATED, gzip ? 16 + MAX_WBITS : MAX_WBITS, 8,
                           Z_DEFAULT_STRATEGY);
    if (ret == Z_MEM_ERROR)
        return ak_fail_nomem(r);
    if (ret != Z_OK) {
        ak_fail(r, AK_ERR_CODEC, 0, "%s compression failed: bad level %d", gzip ? "gzip" : "zlib",
                c->level);
        return r->status;
    }
    size_t in_left = c->nbytes, out_left = cap;
    const unsigned char *in = src;
    unsigned char *o = out;
    do {
        if (zs.avail_in == 0 && in_left)
            next_piece(&zs.next_in, &zs.avail_in, &in, &in_left);
        if (zs.avail_out == 0) {
            if (!out_left)
                break;
            next_piece(&zs.next_out, &zs.avail_out, (const unsigned char **)&o, &out_left);
        }
        ret = deflate(&zs, in_left ? Z_NO_FLUSH : Z_FINISH);
    } while (ret == Z_OK || ret == Z_BUF_ERROR);
    size_t produced = (size_t)(zs.next_out - out);
    deflateEnd(&zs);
    if (ret != Z_STREAM_END) {
        ak_fail(r, AK_ERR_CODEC, 0, "%s compression failed (%d)", gzip ? "gzip" : "zlib", ret);
        return r->status;
    }
    *len = produced;
    return AK_OK;
}

/* -- dispatch --------------------------------------------------------------------------- */

int ak_decode(const ak_chain *c, ak_tstate *ts, const unsigned char *src, size_t n,
              unsigned char *dst, ak_result *r)
{
    switch (c->codec) {
    case AK_ZSTD:
        return decode_zstd(c, ts, src, n, dst, r);
    case AK_BLOSC:
        return decode_blosc(c, src, n, dst, r);
    case AK_LZ4:
        return decode_lz4(c, src, n, dst, r);
    case AK_GZIP:
        return decode_deflate(c, src, n, dst, 1, r);
    case AK_ZLIB:
        return decode_deflate(c, src, n, dst, 0, r);
    default:
        if (n != c->nbytes)
            return wrong_size(r, "bytes", c->nbytes, n);
        memcpy(dst, src, n);
        return AK_OK;
    }
}

size_t ak_encode_bound(const ak_chain *c)
{
    size_t n = c->nbytes;
    switch (c->codec) {
    case AK_ZSTD:
        return ZSTD_compressBound(n);
    case AK_BLOSC:
        return n + BLOSC_MAX_OVERHEAD;
    case AK_LZ4:
        return n > LZ4_MAX_INPUT_SIZE ? 4 : (size_t)LZ4_compressBound((int)n) + 4;
    case AK_GZIP:
    case AK_ZLIB:
        /* zlib's conservative deflateBound, with room for the gzip header and trailer */
        return n + ((n + 7) >> 3) + ((n + 63) >> 6) + 5 + 18;
    default:
        return n;
    }
}

int ak_encode_into(const ak_chain *c, ak_tstate *ts, const unsigned char *src,
                   unsigned char *dst, size_t cap, size_t *out_len, ak_result *r)
{
    switch (c->codec) {
    case AK_ZSTD:
        return encode_zstd(c, ts, src, dst, cap, out_len, r);
    case AK_BLOSC:
        return encode_blosc(c, src, dst, cap, out_len, r);
    case AK_LZ4:
        return encode_lz4(c, src, dst, cap, out_len, r);
    case AK_GZIP:
    case AK_ZLIB:
        return encode_deflate(c, src, dst, cap, out_len, c->codec == AK_GZIP, r);
    default:
        memcpy(dst, src, c->nbytes);
        *out_len = c->nbytes;
        return AK_OK;
    }
}

int ak_encode(const ak_chain *c, ak_tstate *ts, const unsigned char *src,
              const unsigned char **out, size_t *out_len, ak_result *r)
{
    if (c->codec == AK_RAW) {
        *out = src;
        *out_len = c->nbytes;
        return AK_OK;
    }
    size_t cap = ak_encode_bound(c);
    unsigned char *buf = ak_buffer(&ts->enc, &ts->enc_cap, cap);
    if (buf == NULL)
        return ak_fail_nomem(r);
    *out = buf;
    return ak_encode_into(c, ts, src, buf, cap, out_len, r);
}
