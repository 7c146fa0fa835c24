/* Keys as files below a root directory, with the rules of asyncarr's LocalStore:
 *
 * - keys are validated as Store keys are (relative, no empty, "." or ".." segment, no
 *   NUL or backslash) and names ending in ".asyncarr.tmp" / ".asyncarr.lock" are
 *   reserved;
 * - every open resolves the key beneath the root: openat2(RESOLVE_BENEATH) where the
 *   kernel has it, race-free; a path that leaves the root that way (an absolute symbolic
 *   link, or a kernel without openat2) is opened normally and the opened descriptor's own
 *   path (/proc/self/fd) must lie under the root, else the key is refused;
 * - a value is written to a temporary file in its key's directory, anonymous (O_TMPFILE)
 *   where that works, and put in place whole under an exclusive flock of the directory:
 *   a new key with one linkat, an existing one by exchanging it with a named temporary
 *   file (renameat2 RENAME_EXCHANGE) or renaming over it; with fsync, the data and the
 *   directory entry are flushed first. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernel.h"

#define TMP_SUFFIX ".asyncarr.tmp"
#define LOCK_SUFFIX ".asyncarr.lock"
#define WRITE_PIECE ((size_t)256 << 10) /* see WRITE_PIECE in asyncarr/stores/_local.py */
#define DIR_RETRIES 20
#define RETRY 1 /* (errors are -1) */

int ak_has_openat2 = 0; /* probed once at import (module.c) */
static unsigned long temp_serial;

void ak_probe_openat2(void)
{
#ifdef SYS_openat2
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
    if (fd >= 0) {
        close((int)fd);
        ak_has_openat2 = 1;
    }
#endif
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int ak_check_key(const char *key, size_t len, ak_result *r)
{
    if (len == 0) {
        ak_fail(r, AK_ERR_KEY, 0, "empty store key");
        return r->status;
    }
    if (memchr(key, 0, len) || memchr(key, '\\', len)) {
        ak_fail(r, AK_ERR_KEY, 0, "store key contains a NUL byte or backslash");
        return r->status;
    }
    if (key[0] == '/') {
        ak_fail(r, AK_ERR_KEY, 0, "store key must be relative, not absolute");
        return r->status;
    }
    const char *seg = key, *end = key + len;
    while (seg <= end) {
        const char *slash = memchr(seg, '/', (size_t)(end - seg));
        size_t n = (size_t)((slash ? slash : end) - seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            ak_fail(r, AK_ERR_KEY, 0, "store key has an empty, '.' or '..' segment");
            return r->status;
        }
        if (ends_with(seg, n, TMP_SUFFIX) || ends_with(seg, n, LOCK_SUFFIX)) {
            ak_fail(r, AK_ERR_KEY, 0,
                    "key segments ending in '" TMP_SUFFIX "' or '" LOCK_SUFFIX "' are reserved");
            return r->status;
        }
        if (!slash)
            break;
        seg = slash + 1;
    }
    return AK_OK;
}

/* -- resolution beneath the root ------------------------------------------------------ */

static int inside_root(const ak_files *f, int fd, const char *fallback_rel)
{
    char link[64], real[PATH_MAX + 1];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, PATH_MAX);
    if (n < 0) { /* no /proc: resolve the path instead (not race-free, as LocalStore) */
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", f->root_real, fallback_rel) >= (int)sizeof path)
            return 0;
        if (realpath(path, real) == NULL)
            return 0;
        n = (ssize_t)strlen(real);
    }
    real[n] = 0;
    size_t base = f->root_real_len;
    while (base > 1 && f->root_real[base - 1] == '/')
        base--;
    if ((size_t)n < base || memcmp(real, f->root_real, base) != 0)
        return 0;
    return (size_t)n == base || real[base] == '/' || base == 1;
}

/* Open `rel` beneath directory `dirfd` (itself under the root). -1 with errno set on
 * failure; errno EXDEV means "resolves outside the root". */
static int open_beneath(const ak_files *f, int dirfd, const char *rel, int flags)
{
    flags |= O_CLOEXEC;
#ifdef SYS_openat2
    if (ak_has_openat2) {
        struct open_how how = {.flags = (unsigned long long)flags,
                               .mode = 0,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        for (int attempt = 0; attempt < 4; attempt++) {
            long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
            if (fd >= 0)
                return (int)fd;
            if (errno == EAGAIN || errno == EINTR)
                continue; /* a concurrent rename: the kernel asks to try again */
            if (errno != EXDEV)
                return -1;
            break; /* leaves dirfd on the way (e.g. an absolute link): check where it lands */
        }
    }
#endif
    int fd = openat(dirfd, rel, flags);
    if (fd < 0)
        return -1;
    if (!inside_root(f, fd, rel)) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

static int escaped(ak_result *r)
{
    ak_fail(r, AK_ERR_KEY, 0, "key resolves outside the store root (through a symlink)");
    return r->status;
}

int ak_open_read(const ak_files *f, const char *key, int *fd, ak_result *r)
{
    *fd = -1;
    if (f->root_fd < 0)
        return AK_MISSING;
    /* O_NONBLOCK: a FIFO where a value should be must not block the open */
    int got = open_beneath(f, f->root_fd, key, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (got < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return AK_MISSING;
        if (errno == EXDEV)
            return escaped(r);
        return ak_fail_os(r, errno, "read");
    }
    struct stat st;
    if (fstat(got, &st) != 0) {
        int code = errno;
        close(got);
        return ak_fail_os(r, code, "read");
    }
    if (!S_ISREG(st.st_mode)) { /* a directory (a prefix of other keys), a FIFO...: no value */
        close(got);
        return AK_MISSING;
    }
    *fd = got;
    return AK_OK;
}

static int read_at(int fd, unsigned char *buf, size_t len, int64_t offset, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = pread(fd, buf + *got, len - *got, (off_t)(offset + (int64_t)*got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

int ak_read_whole(int fd, const ak_chain *c, ak_tstate *ts, const unsigned char **data,
                  size_t *n, size_t *io_bytes, ak_result *r)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ak_fail_os(r, errno, "read");
    size_t size = (size_t)st.st_size;
    if (size > c->encoded_limit) {
        if (c->codec == AK_RAW)
            ak_fail(r, AK_ERR_CODEC, 0,
                    "decoded chunk has the wrong size: expected %zu bytes, got %zu",
                    c->nbytes, size);
        else
            ak_fail(r, AK_ERR_CODEC, 0,
                    "the chunk is %zu bytes encoded, more than the %zu bytes any encoding of its "
                    "%zu bytes takes (corrupt data)",
                    size, c->encoded_limit, c->nbytes);
        return r->status;
    }
    unsigned char *buf = ak_buffer(&ts->enc, &ts->enc_cap, size ? size : 1);
    if (buf == NULL)
        return ak_fail_nomem(r);
    size_t got;
    if (read_at(fd, buf, size, 0, &got) != 0)
        return ak_fail_os(r, errno, "read");
    *io_bytes += got;
    if (got < size) {
        ak_fail(r, AK_ERR_TRUNCATED, 0, "the file got shorter while it was read: %zu of %zu bytes",
                got, size);
        return r->status;
    }
    *data = buf;
    *n = size;
    return AK_OK;
}

int ak_read_range(int fd, int64_t offset, int64_t length, ak_tstate *ts,
                  const unsigned char **data, size_t *io_bytes, ak_result *r)
{
    unsigned char *buf = ak_buffer(&ts->enc, &ts->enc_cap, length ? (size_t)length : 1);
    if (buf == NULL)
        return ak_fail_nomem(r);
    size_t got;
    if (read_at(fd, buf, (size_t)length, offset, &got) != 0)
        return ak_fail_os(r, errno, "read");
    *io_bytes += got;
    if (got < (size_t)length) {
        struct stat st;
        long long size = fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
        if (size >= 0)
            ak_fail(r, AK_ERR_RANGE, 0,
                    "corrupt shard index: inner chunks end at byte %lld of a %lld-byte shard",
                    (long long)(offset + length), size);
        else
            ak_fail(r, AK_ERR_RANGE, 0,
                    "corrupt shard index: inner chunks end at byte %lld past the end of the shard",
                    (long long)(offset + length));
        return r->status;
    }
    *data = buf;
    return AK_OK;
}

/* -- writes ---------------------------------------------------------------------------- */

static int dir_gone(int dfd)
{
    struct stat st;
    return fstat(dfd, &st) == 0 && st.st_nlink == 0;
}

/* The directory `parent` (NUL-terminated, of length len; "" for the root), opened for
 * locking, made where `create`; AK_MISSING when it does not exist and is not to be made. */
static int open_dir(const ak_files *f, const char *parent, size_t len, int create, int *dfd,
                    ak_result *r)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOCTTY;
    int fd = open_beneath(f, f->root_fd, len ? parent : ".", flags);
    if (fd >= 0) {
        *dfd = fd;
        return AK_OK;
    }
    if (errno == EXDEV)
        return escaped(r);
    if (errno != ENOENT)
        return ak_fail_os(r, errno, "write");
    if (!create)
        return AK_MISSING;
    int cur = open_beneath(f, f->root_fd, ".", flags);
    if (cur < 0)
        return ak_fail_os(r, errno, "write");
    char part[NAME_MAX + 1];
    const char *seg = parent, *end = parent + len;
    while (seg < end) {
        const char *slash = memchr(seg, '/', (size_t)(end - seg));
        size_t n = (size_t)((slash ? slash : end) - seg);
        if (n > NAME_MAX) {
            close(cur);
            return ak_fail_os(r, ENAMETOOLONG, "write");
        }
        memcpy(part, seg, n);
        part[n] = 0;
        if (mkdirat(cur, part, 0777) != 0 && errno != EEXIST) {
            int code = errno;
            close(cur);
            return ak_fail_os(r, code, "write");
        }
        int next = open_beneath(f, cur, part, flags);
        int code = errno;
        close(cur);
        if (next < 0)
            return code == EXDEV ? escaped(r) : ak_fail_os(r, code, "write");
        cur = next;
        seg = slash ? slash + 1 : end;
    }
    *dfd = cur;
    return AK_OK;
}

static int lock_dir(int dfd, int *lockfd)
{
    *lockfd = -1;
    for (;;) {
        if (flock(dfd, LOCK_EX) == 0)
            return 0;
        if (errno != EINTR)
            break;
    }
    if (errno != EBADF && errno != ENOLCK && errno != EINVAL && errno != ENOTSUP &&
        errno != EOPNOTSUPP)
        return -1;
    /* a filesystem that cannot flock a directory (NFS): its reserved lock file */
    int lfd = openat(dfd, ".asyncarr.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (lfd < 0)
        return -1;
    while (flock(lfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int code = errno;
            close(lfd);
            errno = code;
            return -1;
        }
    }
    *lockfd = lfd;
    return 0;
}

static void unlock_dir(int dfd, int lockfd)
{
    if (lockfd >= 0)
        close(lockfd);
    else
        flock(dfd, LOCK_UN);
}

static int write_all(int fd, const unsigned char *data, size_t n, int sync)
{
    size_t done = 0;
    while (done < n) {
        size_t piece = n - done < WRITE_PIECE ? n - done : WRITE_PIECE;
        ssize_t w = write(fd, data + done, piece);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)w;
    }
    return sync ? fsync(fd) : 0;
}

static void temp_name(char *out, size_t cap, const char *name)
{
    size_t len = strlen(name);
    unsigned long serial = __atomic_fetch_add(&temp_serial, 1, __ATOMIC_RELAXED);
    if (len <= 100) {
        snprintf(out, cap, ".%s.%x.%lx" TMP_SUFFIX, name, (unsigned)getpid(), serial);
        return;
    }
    uint32_t h = 2166136261u; /* FNV-1a keeps long names apart */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    snprintf(out, cap, ".%.60s~%08x.%x.%lx" TMP_SUFFIX, name, h, (unsigned)getpid(), serial);
}

typedef struct {
    int fd;               /* an anonymous temporary file, or -1 */
    char name[NAME_MAX + 1]; /* a named one, or "" */
} temp_file;

static int named_temp(const ak_files *f, int dfd, const char *name, const unsigned char *data,
                      size_t n, temp_file *t)
{
    int fd;
    for (;;) {
        temp_name(t->name, sizeof t->name, name);
        fd = openat(dfd, t->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd >= 0)
            break;
        if (errno != EEXIST) { /* EEXIST: left by a crashed process with the same pid */
            t->name[0] = 0;
            return -1;
        }
    }
    if (write_all(fd, data, n, f->fsync) != 0) {
        int code = errno;
        close(fd);
        unlinkat(dfd, t->name, 0);
        t->name[0] = 0;
        errno = code;
        return -1;
    }
    close(fd);
    return 0;
}

/* Write the value to a temporary file in dfd: 0, RETRY (the directory was removed
 * meanwhile), or -1 with errno set. */
static int stage(const ak_files *f, ak_tstate *ts, int dfd, const char *name,
                 const unsigned char *data, size_t n, temp_file *t)
{
    t->fd = -1;
    t->name[0] = 0;
    if (ts->expect_new && ts->anonymous_ok) {
        int fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
        if (fd >= 0) {
            if (write_all(fd, data, n, f->fsync) != 0) {
                int code = errno;
                close(fd);
                errno = code;
                return -1;
            }
            t->fd = fd;
            return 0;
        }
        int code = errno;
        if (dir_gone(dfd))
            return RETRY;
        errno = code;
        if (code != EOPNOTSUPP && code != ENOTSUP && code != EISDIR && code != EINVAL)
            return -1;
        ts->anonymous_ok = 0;
    }
    if (named_temp(f, dfd, name, data, n, t) != 0) {
        int code = errno;
        if (code == ENOENT && dir_gone(dfd))
            return RETRY;
        errno = code;
        return -1;
    }
    return 0;
}

static void sync_dir(const ak_files *f, int dfd)
{
    if (f->fsync)
        fsync(dfd);
}

static int regular_at(int dfd, const char *name)
{
    struct stat st;
    return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* Put the staged value in place as `name` (holding the directory's lock). */
static int commit(const ak_files *f, ak_tstate *ts, int dfd, const char *name,
                  const unsigned char *data, size_t n, temp_file *t)
{
    if (t->fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
        if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) == 0) {
            close(t->fd);
            t->fd = -1;
            ts->expect_new = 1;
            sync_dir(f, dfd);
            return 0;
        }
        int code = errno;
        if (code == EEXIST) { /* an existing key: give the file a temporary name */
            ts->expect_new = 0;
            for (;;) {
                temp_name(t->name, sizeof t->name, name);
                if (linkat(AT_FDCWD, proc, dfd, t->name, AT_SYMLINK_FOLLOW) == 0)
                    break;
                if (errno != EEXIST) {
                    t->name[0] = 0;
                    return -1;
                }
            }
            close(t->fd);
            t->fd = -1;
        } else if (code == ENOENT && dir_gone(dfd)) {
            return RETRY;
        } else if (code == EPERM || code == EOPNOTSUPP || code == ENOTSUP || code == EXDEV ||
                   code == ENOSYS || code == ENOENT) {
            /* this filesystem cannot link anonymous files in: name them from now on */
            ts->anonymous_ok = 0;
            close(t->fd);
            t->fd = -1;
            if (named_temp(f, dfd, name, data, n, t) != 0)
                return -1;
        } else {
            errno = code;
            return -1;
        }
    }
    if (regular_at(dfd, name)) {
        /* swap with the old value, then drop it: cheaper than renaming over it on ext4 */
        if (renameat2(dfd, t->name, dfd, name, RENAME_EXCHANGE) == 0) {
            ts->expect_new = 0;
            unlinkat(dfd, t->name, 0);
            t->name[0] = 0;
            sync_dir(f, dfd);
            return 0;
        }
        if (errno != ENOENT && errno != EINVAL && errno != ENOSYS && errno != EXDEV &&
            errno != ENOTSUP && errno != EOPNOTSUPP)
            return -1;
    }
    ts->expect_new = 1;
    if (renameat(dfd, t->name, dfd, name) != 0) {
        int code = errno;
        if (code == ENOENT && dir_gone(dfd))
            return RETRY;
        errno = code;
        if (code != EISDIR && code != ENOTEMPTY && code != EEXIST)
            return -1;
        /* an empty leftover directory may go; one holding keys stays (and fails) */
        if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 || renameat(dfd, t->name, dfd, name) != 0)
            return -1;
    }
    t->name[0] = 0;
    sync_dir(f, dfd);
    return 0;
}

static int remove_value(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    int code = errno;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        return 0; /* a directory is no value: nothing to remove */
    errno = code;
    return -1;
}

static void drop_dir(ak_tstate *ts)
{
    if (ts->dfd >= 0)
        close(ts->dfd);
    ts->dfd = -1;
    ts->dir_len = (size_t)-1;
}

int ak_store(const ak_files *f, ak_tstate *ts, const char *key, size_t keylen,
             const unsigned char *data, size_t n, size_t *io_bytes, ak_result *r)
{
    const char *slash = keylen ? memrchr(key, '/', keylen) : NULL;
    size_t plen = slash ? (size_t)(slash - key) : 0;
    const char *name = slash ? slash + 1 : key;
    if (strlen(name) > NAME_MAX)
        return ak_fail_os(r, ENAMETOOLONG, "write");
    if (f->root_fd < 0) {
        if (data == NULL)
            return AK_EMPTY;
        return ak_fail_os(r, ENOENT, "write");
    }
    for (int attempt = 0; attempt < DIR_RETRIES; attempt++) {
        if (ts->dfd < 0 || ts->dir_len != plen || memcmp(ts->dir, key, plen) != 0) {
            drop_dir(ts);
            if (ak_buffer((unsigned char **)&ts->dir, &ts->dir_cap, plen + 1) == NULL)
                return ak_fail_nomem(r);
            memcpy(ts->dir, key, plen); /* the parent, NUL-terminated */
            ts->dir[plen] = 0;
            int dfd = -1, st = open_dir(f, ts->dir, plen, data != NULL, &dfd, r);
            if (st == AK_MISSING)
                return AK_EMPTY; /* removing from a directory that does not exist: done */
            if (st != AK_OK)
                return st;
            ts->dir_len = plen;
            ts->dfd = dfd;
        }
        int dfd = ts->dfd, lockfd, rc;
        temp_file t = {.fd = -1, .name = ""};
        if (data != NULL) {
            rc = stage(f, ts, dfd, name, data, n, &t);
            if (rc == RETRY) {
                drop_dir(ts);
                continue;
            }
            if (rc != 0)
                return ak_fail_os(r, errno, "write");
            *io_bytes += n;
        }
        if (lock_dir(dfd, &lockfd) != 0) {
            int code = errno;
            if (t.fd >= 0)
                close(t.fd);
            if (t.name[0])
                unlinkat(dfd, t.name, 0);
            return ak_fail_os(r, code, "write");
        }
        rc = data != NULL ? commit(f, ts, dfd, name, data, n, &t) : remove_value(dfd, name);
        int code = errno;
        unlock_dir(dfd, lockfd);
        if (t.fd >= 0)
            close(t.fd);
        if (t.name[0])
            unlinkat(dfd, t.name, 0);
        if (rc == RETRY) {
            drop_dir(ts);
            continue;
        }
        if (rc != 0)
            return ak_fail_os(r, code, "write");
        return data != NULL ? AK_OK : AK_EMPTY;
    }
    ak_fail(r, AK_ERR_TRANSIENT, 0, "the key's directory kept disappearing during the write");
    return r->status;
}

/* Remove now-empty directories from `parent` up to (not including) the root. */
void ak_prune(const ak_files *f, const char *parent, size_t len)
{
    char path[PATH_MAX];
    if (f->root_fd < 0 || len >= sizeof path)
        return;
    memcpy(path, parent, len);
    path[len] = 0;
    while (len) {
        char *slash = memrchr(path, '/', len);
        int pfd;
        const char *last;
        if (slash) {
            *slash = 0;
            pfd = open_beneath(f, f->root_fd, path, O_RDONLY | O_DIRECTORY);
            last = slash + 1;
        } else {
            pfd = open_beneath(f, f->root_fd, ".", O_RDONLY | O_DIRECTORY);
            last = path;
        }
        if (pfd < 0)
            return;
        int rc = unlinkat(pfd, last, AT_REMOVEDIR);
        close(pfd);
        if (rc != 0)
            return;
        len = slash ? (size_t)(slash - path) : 0;
    }
}
