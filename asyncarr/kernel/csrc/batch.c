/* Running a batch: per-item read/write steps, spread over native threads.
 *
 * Each call starts its worker threads and joins them before returning (no threads
 * outlive a call, so forked children inherit none). The memory that makes a chunk
 * cheap - decode scratch, read and encode buffers, zstd contexts - lives in per-thread
 * states that calls take from a shared free list and give back, so it is reused across
 * calls instead of faulted in anew each time. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "batch.h"

#define MAX_THREADS 64
#define MAX_FREE 64
#define KEEP_BUFFER ((size_t)16 << 20) /* larger buffers are freed after the call */

/* -- results ------------------------------------------------------------------------------ */

void ak_fail(ak_result *r, int status, int code, const char *fmt, ...)
{
    r->status = status;
    r->code = code;
    free(r->msg);
    r->msg = malloc(512);
    if (r->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, 512, fmt, ap);
        va_end(ap);
    }
}

int ak_fail_os(ak_result *r, int code, const char *action)
{
    ak_fail(r, AK_ERR_OS, code, "%s", action);
    return r->status;
}

int ak_fail_nomem(ak_result *r)
{
    r->status = AK_ERR_NOMEM;
    r->code = 0;
    return r->status;
}

/* -- per-thread states ------------------------------------------------------------------ */

static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static ak_tstate *free_list;
static int free_count;

unsigned char *ak_buffer(unsigned char **buf, size_t *cap, size_t need)
{
    if (*buf != NULL && *cap >= need)
        return *buf;
    free(*buf);
    *cap = 0;
    *buf = malloc(need ? need : 1);
    if (*buf != NULL)
        *cap = need;
    return *buf;
}

static ak_tstate *tstate_get(void)
{
    pthread_mutex_lock(&free_lock);
    ak_tstate *ts = free_list;
    if (ts != NULL) {
        free_list = ts->next;
        free_count--;
    }
    pthread_mutex_unlock(&free_lock);
    if (ts == NULL) {
        ts = calloc(1, sizeof *ts);
        if (ts == NULL)
            return NULL;
        ts->anonymous_ok = 1;
        ts->expect_new = 1;
    }
    ts->fd = -1;
    ts->fd_key = NULL;
    ts->dfd = -1;
    ts->dir_len = (size_t)-1;
    return ts;
}

static void tstate_destroy(ak_tstate *ts)
{
    ZSTD_freeDCtx(ts->dctx);
    ZSTD_freeCCtx(ts->cctx);
    free(ts->dec);
    free(ts->enc);
    free(ts->dir);
    free(ts);
}

static void tstate_put(ak_tstate *ts)
{
    if (ts->fd >= 0)
        close(ts->fd);
    if (ts->dfd >= 0)
        close(ts->dfd);
    ts->fd = ts->dfd = -1;
    if (ts->dec_cap > KEEP_BUFFER) {
        free(ts->dec);
        ts->dec = NULL;
        ts->dec_cap = 0;
    }
    if (ts->enc_cap > KEEP_BUFFER) {
        free(ts->enc);
        ts->enc = NULL;
        ts->enc_cap = 0;
    }
    pthread_mutex_lock(&free_lock);
    if (free_count < MAX_FREE) {
        ts->next = free_list;
        free_list = ts;
        free_count++;
        ts = NULL;
    }
    pthread_mutex_unlock(&free_lock);
    if (ts != NULL)
        tstate_destroy(ts);
}

void ak_tstate_reset_after_fork(void)
{
    /* the child has one thread; the list may be mid-update in the parent's copy */
    pthread_mutex_init(&free_lock, NULL);
    free_list = NULL;
    free_count = 0;
}

/* -- one item ------------------------------------------------------------------------------ */

static void load_region(const ak_job *job, size_t i, ak_region *reg)
{
    int nd = job->chain->ndim;
    const int64_t *p = job->regions + i * 3 * (size_t)nd;
    reg->ndim = nd;
    for (int d = 0; d < nd; d++) {
        reg->shape[d] = p[d];
        reg->src[d] = p[nd + d];
        reg->dst[d] = p[2 * nd + d];
    }
}

static int source_file(const ak_job *job, ak_tstate *ts, const ak_read_item *it, int *fd,
                       ak_result *r)
{
    if (ts->fd >= 0 && ts->fd_keylen == it->keylen && memcmp(ts->fd_key, it->key, it->keylen) == 0) {
        *fd = ts->fd; /* the same shard as the item before */
        return AK_OK;
    }
    if (ts->fd >= 0)
        close(ts->fd);
    ts->fd = -1;
    int st = ak_open_read(job->files, it->key, fd, r);
    if (st == AK_OK) {
        ts->fd = *fd;
        ts->fd_key = it->key;
        ts->fd_keylen = it->keylen;
    }
    return st;
}

static void read_one(ak_job *job, ak_tstate *ts, size_t i, size_t *io)
{
    const ak_chain *c = job->chain;
    ak_read_item *it = &job->reads[i];
    ak_result *r = &job->results[i];
    if (r->status != AK_OK)
        return; /* refused while the batch was built (a malformed key) */
    ak_region reg;
    load_region(job, i, &reg);
    const unsigned char *data = NULL;
    size_t n = 0;
    int ranged = it->length >= 0;
    if (ranged && (uint64_t)it->length > c->encoded_limit) {
        ak_fail(r, AK_ERR_CODEC, 0,
                "the shard index gives an inner chunk of %lld bytes, more than the %zu bytes any "
                "encoding of its %zu bytes takes (corrupt shard index)",
                (long long)it->length, c->encoded_limit, c->nbytes);
        return;
    }
    if (it->kind == AK_SRC_BUF) {
        data = it->buf;
        n = it->buflen;
        if (ranged) {
            if ((uint64_t)it->offset + (uint64_t)it->length > it->buflen) {
                ak_fail(r, AK_ERR_RANGE, 0,
                        "corrupt shard index: inner chunks end at byte %lld of a %zu-byte shard",
                        (long long)(it->offset + it->length), it->buflen);
                return;
            }
            data += it->offset;
            n = (size_t)it->length;
        }
    } else if (it->kind == AK_SRC_FILE) {
        int fd, st = source_file(job, ts, it, &fd, r);
        if (st == AK_MISSING && ranged) {
            ak_fail(r, AK_ERR_GONE, 0, "shard disappeared between index and data reads");
            return;
        }
        if (st == AK_OK)
            st = ranged ? ak_read_range(fd, it->offset, it->length, ts, &data, io, r)
                        : ak_read_whole(fd, c, ts, &data, &n, io, r);
        if (ranged)
            n = (size_t)it->length;
        if (st == AK_MISSING)
            it->kind = AK_SRC_NONE;
        else if (st != AK_OK)
            return;
    }
    if (it->kind == AK_SRC_NONE) {
        ak_fill(it->dst, reg.dst, reg.shape, reg.ndim, c->fill_out, c->itemsize);
        r->status = AK_MISSING;
        return;
    }
    if (c->codec == AK_RAW) { /* the stored bytes are the chunk: copy the region out */
        if (n != c->nbytes) {
            ak_fail(r, AK_ERR_CODEC, 0,
                    "decoded chunk has the wrong size: expected %zu bytes, got %zu",
                    c->nbytes, n);
            return;
        }
        ak_copy(it->dst, (const char *)data + it->src_off, &reg, c->itemsize, c->swap_unit);
        return;
    }
    if (it->whole) {
        ak_decode(c, ts, data, n, (unsigned char *)it->dst, r);
        return;
    }
    unsigned char *scratch = ak_buffer(&ts->dec, &ts->dec_cap, c->nbytes);
    if (scratch == NULL) {
        ak_fail_nomem(r);
        return;
    }
    if (ak_decode(c, ts, data, n, scratch, r) == AK_OK)
        ak_copy(it->dst, (const char *)scratch + it->src_off, &reg, c->itemsize, c->swap_unit);
}

static void write_one(ak_job *job, ak_tstate *ts, size_t i, size_t *io)
{
    const ak_chain *c = job->chain;
    ak_write_item *it = &job->writes[i];
    ak_result *r = &job->results[i];
    if (r->status != AK_OK)
        return;
    const unsigned char *chunk = (const unsigned char *)it->src;
    if (!it->direct) { /* gather the region in the stored layout, padded with the fill value */
        unsigned char *buf = ak_buffer(&ts->dec, &ts->dec_cap, c->nbytes);
        if (buf == NULL) {
            ak_fail_nomem(r);
            return;
        }
        if (!it->full)
            ak_fill_contiguous((char *)buf, c->nbytes, c->fill_stored, c->itemsize);
        ak_region reg;
        load_region(job, i, &reg);
        ak_copy((char *)buf, it->src, &reg, c->itemsize, c->swap_unit);
        chunk = buf;
    }
    if (!job->write_empty && ak_is_fill(c, chunk, c->nbytes)) {
        if (job->mode == AK_WRITE)
            r->status = ak_store(job->files, ts, it->key, it->keylen, NULL, 0, io, r);
        else
            r->status = AK_EMPTY;
        return;
    }
    if (job->mode == AK_ENCODE) { /* straight into the bytes object the caller gets */
        ak_encode_into(c, ts, chunk, it->out, it->out_cap, &it->out_len, r);
        return;
    }
    const unsigned char *enc;
    size_t len;
    if (ak_encode(c, ts, chunk, &enc, &len, r) == AK_OK)
        ak_store(job->files, ts, it->key, it->keylen, enc, len, io, r);
}

/* -- threads -------------------------------------------------------------------------------- */

static void *worker(void *arg)
{
    ak_job *job = arg;
    ak_tstate *ts = tstate_get();
    size_t io = 0;
    for (;;) {
        size_t start = __atomic_fetch_add(&job->next, job->grain, __ATOMIC_RELAXED);
        if (start >= job->n)
            break;
        size_t end = start + job->grain < job->n ? start + job->grain : job->n;
        for (size_t i = start; i < end; i++) {
            if (ts == NULL)
                ak_fail_nomem(&job->results[i]);
            else if (job->mode == AK_READ)
                read_one(job, ts, i, &io);
            else
                write_one(job, ts, i, &io);
        }
    }
    __atomic_fetch_add(&job->io_bytes, io, __ATOMIC_RELAXED);
    if (ts != NULL)
        tstate_put(ts);
    return NULL;
}

void ak_run(ak_job *job, int workers)
{
    if (job->n == 0)
        return;
    if (workers < 1)
        workers = 1;
    if (workers > MAX_THREADS)
        workers = MAX_THREADS;
    if ((size_t)workers > job->n)
        workers = (int)job->n;
    /* small claims keep the threads evenly busy; runs of neighbours keep a shard's file open */
    size_t grain = job->n / ((size_t)workers * 8);
    job->grain = grain < 1 ? 1 : grain > 16 ? 16 : grain;
    job->next = 0;
    pthread_t threads[MAX_THREADS];
    int started = 0;
    for (int w = 1; w < workers; w++) {
        if (pthread_create(&threads[started], NULL, worker, job) != 0)
            break; /* run on the threads we have */
        started++;
    }
    worker(job);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
}
