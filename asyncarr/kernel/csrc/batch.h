/* A batch of chunks for one kernel call: what module.c builds under the GIL and
 * batch.c runs without it. */
#ifndef ASYNCARR_BATCH_H
#define ASYNCARR_BATCH_H

#include "kernel.h"

enum ak_source { AK_SRC_NONE = 0, AK_SRC_FILE, AK_SRC_BUF };
enum ak_mode { AK_READ = 0, AK_WRITE, AK_ENCODE };

typedef struct {
    int kind;                     /* enum ak_source */
    const char *key;              /* AK_SRC_FILE: the key, NUL-terminated */
    size_t keylen;
    const unsigned char *buf;     /* AK_SRC_BUF: the whole buffer */
    size_t buflen;
    int64_t offset, length;       /* a byte range of the source; length < 0: all of it */
    int64_t src_off;              /* where the region starts in the decoded chunk (bytes) */
    char *dst;                    /* where it starts in the output array */
    int whole;                    /* the region is the whole chunk, laid out as stored */
} ak_read_item;

typedef struct {
    const char *key;              /* AK_WRITE: the key, NUL-terminated */
    size_t keylen;
    const char *src;              /* where the chunk's region starts in the value */
    int full;                     /* the region is the whole chunk (no padding) */
    int direct;                   /* ... and laid out in the value as stored: no gather */
    unsigned char *out;           /* AK_ENCODE: where the encoded chunk goes (a bytes object's */
    size_t out_cap;               /* buffer of ak_encode_bound bytes, made before the run) */
    size_t out_len;
} ak_write_item;

typedef struct {
    int mode;                     /* enum ak_mode */
    const ak_chain *chain;
    const ak_files *files;        /* NULL: no files (buffers only, or encode only) */
    size_t n;
    ak_read_item *reads;
    ak_write_item *writes;
    int64_t *regions;             /* per item: ndim extents, source strides, destination strides */
    ak_result *results;
    int write_empty;
    size_t next;                  /* the next item to claim (atomic) */
    size_t grain;                 /* items claimed at a time */
    size_t io_bytes;              /* bytes read or written from files (atomic) */
} ak_job;

void ak_run(ak_job *job, int workers);
void ak_tstate_reset_after_fork(void);

#endif
