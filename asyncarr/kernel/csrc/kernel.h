/* asyncarr's native batch kernel: shared types.
 *
 * One call reads (or writes) a whole batch of chunks with the GIL released once,
 * spread over native threads. The Python side (asyncarr/kernel) builds the codec
 * chain once per array and a list of items per batch; every item gets a status
 * back, and errors carry a message that the Python side turns into the matching
 * asyncarr error, naming the item's key.
 */
#ifndef ASYNCARR_KERNEL_H
#define ASYNCARR_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AK_MAX_NDIM 32

/* The one bytes -> bytes stage a chain may have (AK_RAW: none). */
enum ak_codec { AK_RAW = 0, AK_ZSTD, AK_BLOSC, AK_LZ4, AK_GZIP, AK_ZLIB };

/* How "equal to the fill value" is decided for an element (see ak_is_fill). */
enum ak_fill_kind { AK_FILL_BITS = 0, AK_FILL_FLOAT, AK_FILL_COMPLEX };

/* Per-item outcome. Keep in step with asyncarr/kernel/_batch.py. */
enum ak_status {
    AK_OK = 0,
    AK_MISSING,        /* read: no such chunk, region filled with the fill value */
    AK_EMPTY,          /* write: the chunk is all fill value, so it was removed (not stored) */
    AK_ERR_CODEC,      /* corrupt, wrong-size or oversized data; a failed encode */
    AK_ERR_RANGE,      /* a byte range reaching past the end of its shard */
    AK_ERR_OS,         /* a system call failed: code is errno */
    AK_ERR_KEY,        /* the key is malformed, reserved, or resolves outside the root */
    AK_ERR_TRUNCATED,  /* the file got shorter while it was read */
    AK_ERR_GONE,       /* the shard of a byte range no longer exists */
    AK_ERR_TRANSIENT,  /* a directory kept disappearing under concurrent deletes */
    AK_ERR_NOMEM,      /* out of memory */
};

typedef struct {
    int codec;                     /* enum ak_codec */
    int level;                     /* zstd/gzip/zlib level, blosc clevel, lz4 acceleration */
    int checksum;                  /* zstd: write a content checksum */
    int shuffle;                   /* blosc: 0 none, 1 byte, 2 bit */
    int typesize;                  /* blosc */
    int blocksize;                 /* blosc */
    char cname[16];                /* blosc inner compressor */
    int ndim;
    int64_t shape[AK_MAX_NDIM];    /* the decoded chunk's shape */
    int64_t strides[AK_MAX_NDIM];  /* byte strides of each decoded axis in the stored layout */
    int contiguous;                /* strides are the C-contiguous strides of shape */
    size_t nbytes;                 /* decoded bytes of one chunk */
    int itemsize;
    int swap_unit;                 /* 0: stored in the caller's byte order; else bytes per swapped unit */
    int fill_kind;                 /* enum ak_fill_kind */
    int stored_native;             /* the stored byte order is this machine's */
    unsigned char fill_out[16];    /* the fill value in the caller's byte order */
    unsigned char fill_stored[16]; /* the fill value in the stored byte order (edge padding) */
    unsigned char fill_cmp[16];    /* what "all fill value" compares with, stored byte order */
    size_t encoded_limit;          /* the largest encoded chunk accepted (bounded memory) */
} ak_chain;

/* A strided region: ndim extents with byte strides on each side. */
typedef struct {
    int ndim;
    int64_t shape[AK_MAX_NDIM];
    int64_t src[AK_MAX_NDIM];
    int64_t dst[AK_MAX_NDIM];
} ak_region;

typedef struct {
    int status;                    /* enum ak_status */
    int code;                      /* errno for AK_ERR_OS */
    char *msg;                     /* malloc'd message, or NULL */
} ak_result;

/* Where keys live: a directory, with LocalStore's rules. */
typedef struct {
    int root_fd;                   /* the root directory (O_RDONLY), or -1 when it does not exist */
    const char *root_real;         /* the root with every symbolic link resolved */
    size_t root_real_len;
    int fsync;                     /* flush data and directory entries before returning */
} ak_files;

/* Per-thread state, reused across calls (see batch.c). */
typedef struct ak_tstate ak_tstate;

/* -- results ------------------------------------------------------------------------ */
void ak_fail(ak_result *r, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int ak_fail_os(ak_result *r, int code, const char *action);
int ak_fail_nomem(ak_result *r);

/* -- layout.c: strided copies, fills, emptiness ------------------------------------ */
void ak_copy(char *dst, const char *src, const ak_region *region, int itemsize, int swap_unit);
void ak_fill(char *dst, const int64_t *strides, const int64_t *shape, int ndim,
             const unsigned char *pattern, int itemsize);
void ak_fill_contiguous(char *dst, size_t nbytes, const unsigned char *pattern, int itemsize);
int ak_is_fill(const ak_chain *c, const unsigned char *data, size_t nbytes);

/* -- codecs.c: bounded decoders and encoders -------------------------------------- */
/* Decode src into dst, which holds exactly c->nbytes. */
int ak_decode(const ak_chain *c, ak_tstate *ts, const unsigned char *src, size_t n,
              unsigned char *dst, ak_result *r);
/* Encode c->nbytes at src; *out points into the thread's buffer (or at src for AK_RAW). */
int ak_encode(const ak_chain *c, ak_tstate *ts, const unsigned char *src,
              const unsigned char **out, size_t *out_len, ak_result *r);
/* Encode c->nbytes at src into dst (cap bytes, at least ak_encode_bound). */
int ak_encode_into(const ak_chain *c, ak_tstate *ts, const unsigned char *src,
                   unsigned char *dst, size_t cap, size_t *out_len, ak_result *r);
size_t ak_encode_bound(const ak_chain *c);

/* -- files.c: keys under a root ------------------------------------------------------ */
int ak_check_key(const char *key, size_t len, ak_result *r);
/* Open a key's file for reading: AK_OK (*fd set, regular file), AK_MISSING, or an error. */
int ak_open_read(const ak_files *f, const char *key, int *fd, ak_result *r);
/* Read a whole regular file into the thread's buffer. */
int ak_read_whole(int fd, const ak_chain *c, ak_tstate *ts, const unsigned char **data,
                  size_t *n, size_t *io_bytes, ak_result *r);
int ak_read_range(int fd, int64_t offset, int64_t length, ak_tstate *ts,
                  const unsigned char **data, size_t *io_bytes, ak_result *r);
/* Store (data != NULL) or remove (data == NULL) a key's value, atomically. */
int ak_store(const ak_files *f, ak_tstate *ts, const char *key, size_t keylen,
             const unsigned char *data, size_t n, size_t *io_bytes, ak_result *r);
void ak_prune(const ak_files *f, const char *parent, size_t len);

/* -- batch.c: per-thread state --------------------------------------------------------- */
struct ak_tstate {
    struct ak_tstate *next;
    void *dctx;                    /* ZSTD_DCtx */
    void *cctx;                    /* ZSTD_CCtx */
    unsigned char *dec;            /* decoded-chunk scratch */
    size_t dec_cap;
    unsigned char *enc;            /* encoded-chunk buffer (reads and encodes) */
    size_t enc_cap;
    /* per call: the file of the previous item (shard ranges), the directory of the previous write */
    const char *fd_key;
    size_t fd_keylen;
    int fd;
    char *dir;
    size_t dir_len;
    size_t dir_cap;
    int dfd;
    int expect_new;                /* the latest key written was new: stage the next anonymously */
    int anonymous_ok;              /* O_TMPFILE + link work here */
};

unsigned char *ak_buffer(unsigned char **buf, size_t *cap, size_t need);

#endif
