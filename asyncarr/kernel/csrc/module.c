/* asyncarr.kernel._ckernel: the Python face of the batch kernel.
 *
 *   make_chain(...)                         -> capsule (see asyncarr/kernel/_chain.py)
 *   read(chain, out, items, files, workers) -> (decoded, missing, io_bytes, errors)
 *   write(chain, value, items, files, workers, write_empty) -> (stored, removed, io_bytes, errors)
 *   encode(chain, value, sels, workers, write_empty)        -> (list of bytes | None, errors)
 *   versions()                              -> the linked libraries' versions
 *
 * Items are parsed here, holding the GIL (a tight C loop); then one ak_run() with the
 * GIL released does the whole batch. errors is a list of (index, status, code, message)
 * for the items that failed; asyncarr/kernel/_batch.py turns them into asyncarr errors. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <blosc.h>
#include <lz4.h>
#include <zlib.h>
#include <zstd.h>

#include "batch.h"

#define CHAIN_CAPSULE "asyncarr.kernel.chain"

extern int ak_has_openat2;
void ak_probe_openat2(void);

static void chain_free(PyObject *capsule)
{
    free(PyCapsule_GetPointer(capsule, CHAIN_CAPSULE));
}

static int int64_tuple(PyObject *obj, int64_t *out, int n, const char *what)
{
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != n) {
        PyErr_Format(PyExc_ValueError, "%s must be a tuple of %d integers", what, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(obj, i));
        if (out[i] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PyObject *make_chain(PyObject *self, PyObject *args)
{
    ak_chain c;
    memset(&c, 0, sizeof c);
    const char *cname;
    Py_ssize_t cname_len, fill_out_len, fill_stored_len, fill_cmp_len;
    const char *fill_out, *fill_stored, *fill_cmp;
    PyObject *shape, *strides;
    Py_ssize_t encoded_limit;
    if (!PyArg_ParseTuple(args, "iiiiiis#O!O!iiiiy#y#y#n", &c.codec, &c.level, &c.checksum,
                          &c.shuffle, &c.typesize, &c.blocksize, &cname, &cname_len,
                          &PyTuple_Type, &shape, &PyTuple_Type, &strides, &c.itemsize,
                          &c.swap_unit, &c.fill_kind, &c.stored_native, &fill_out, &fill_out_len,
                          &fill_stored, &fill_stored_len, &fill_cmp, &fill_cmp_len,
                          &encoded_limit))
        return NULL;
    Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
    if (c.codec < AK_RAW || c.codec > AK_ZLIB || ndim > AK_MAX_NDIM || c.itemsize < 1 ||
        c.itemsize > 16 || fill_out_len != c.itemsize || fill_stored_len != c.itemsize ||
        fill_cmp_len != c.itemsize ||
        cname_len >= (Py_ssize_t)sizeof c.cname || encoded_limit < 0) {
        PyErr_SetString(PyExc_ValueError, "invalid kernel chain parameters");
        return NULL;
    }
    c.ndim = (int)ndim;
    if (int64_tuple(shape, c.shape, c.ndim, "shape") || int64_tuple(strides, c.strides, c.ndim, "strides"))
        return NULL;
    size_t nbytes = (size_t)c.itemsize;
    int64_t expect = c.itemsize;
    c.contiguous = 1;
    for (int d = c.ndim - 1; d >= 0; d--) {
        if (c.shape[d] < 0) {
            PyErr_SetString(PyExc_ValueError, "negative chunk shape");
            return NULL;
        }
        c.contiguous &= c.strides[d] == expect || c.shape[d] <= 1;
        expect *= c.shape[d];
        nbytes *= (size_t)c.shape[d];
    }
    c.nbytes = nbytes;
    memcpy(c.cname, cname, (size_t)cname_len);
    memcpy(c.fill_out, fill_out, (size_t)c.itemsize);
    memcpy(c.fill_stored, fill_stored, (size_t)c.itemsize);
    memcpy(c.fill_cmp, fill_cmp, (size_t)c.itemsize);
    c.encoded_limit = (size_t)encoded_limit;
    ak_chain *p = malloc(sizeof c);
    if (p == NULL)
        return PyErr_NoMemory();
    *p = c;
    PyObject *capsule = PyCapsule_New(p, CHAIN_CAPSULE, chain_free);
    if (capsule == NULL)
        free(p);
    return capsule;
}

/* -- a batch under construction ---------------------------------------------------------- */

typedef struct {
    ak_job job;
    ak_files files;
    int have_files;
    Py_buffer array;              /* out (reads) or value (writes) */
    int have_array;
    Py_buffer *views;             /* buffer sources */
    Py_ssize_t nviews;
    PyObject *keep;               /* objects whose memory the items point into */
} batch;

static void batch_free(batch *b)
{
    if (b->job.results)
        for (size_t i = 0; i < b->job.n; i++)
            free(b->job.results[i].msg);
    for (Py_ssize_t i = 0; i < b->nviews; i++)
        PyBuffer_Release(&b->views[i]);
    if (b->have_array)
        PyBuffer_Release(&b->array);
    if (b->have_files && b->files.root_fd >= 0)
        close(b->files.root_fd);
    free(b->views);
    free(b->job.reads);
    free(b->job.writes);
    free(b->job.regions);
    free(b->job.results);
    Py_XDECREF(b->keep);
}

static int batch_init(batch *b, PyObject *capsule, PyObject *array, int writable, size_t n,
                      int mode)
{
    memset(b, 0, sizeof *b);
    b->job.mode = mode;
    b->job.chain = PyCapsule_GetPointer(capsule, CHAIN_CAPSULE);
    if (b->job.chain == NULL)
        return -1;
    if (PyObject_GetBuffer(array, &b->array, writable ? PyBUF_RECORDS : PyBUF_RECORDS_RO) != 0)
        return -1;
    b->have_array = 1;
    const ak_chain *c = b->job.chain;
    if (b->array.itemsize != c->itemsize || b->array.ndim != c->ndim) {
        PyErr_Format(PyExc_ValueError,
                     "the array has %d dimensions of %zd-byte items; the chain is for %d of %d",
                     b->array.ndim, b->array.itemsize, c->ndim, c->itemsize);
        return -1;
    }
    b->keep = PyList_New(0);
    b->job.n = n;
    b->job.results = calloc(n ? n : 1, sizeof(ak_result));
    b->job.regions = malloc((n ? n : 1) * 3 * (size_t)(c->ndim ? c->ndim : 1) * sizeof(int64_t));
    if (mode == AK_READ) {
        b->job.reads = calloc(n ? n : 1, sizeof(ak_read_item));
        b->views = calloc(n ? n : 1, sizeof(Py_buffer));
    } else {
        b->job.writes = calloc(n ? n : 1, sizeof(ak_write_item));
    }
    if (b->keep == NULL || !b->job.results || !b->job.regions ||
        (mode == AK_READ ? !b->job.reads || !b->views : !b->job.writes)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int batch_files(batch *b, PyObject *files)
{
    if (files == Py_None)
        return 0;
    PyObject *root, *root_real;
    int fsync_flag;
    if (!PyArg_ParseTuple(files, "O&O&p", PyUnicode_FSConverter, &root, PyUnicode_FSConverter,
                          &root_real, &fsync_flag))
        return -1;
    int list_ok = PyList_Append(b->keep, root) == 0 && PyList_Append(b->keep, root_real) == 0;
    Py_DECREF(root);
    Py_DECREF(root_real);
    if (!list_ok)
        return -1;
    b->files.root_real = PyBytes_AS_STRING(root_real);
    b->files.root_real_len = (size_t)PyBytes_GET_SIZE(root_real);
    b->files.fsync = fsync_flag;
    b->files.root_fd = open(PyBytes_AS_STRING(root), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->files.root_fd < 0 && errno != ENOENT) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, root);
        return -1;
    }
    b->have_files = 1;
    b->job.files = &b->files;
    return 0;
}

/* A key's bytes (UTF-8, or the file system encoding for keys that are not valid UTF-8). */
static int key_bytes(batch *b, PyObject *obj, const char **key, size_t *len)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "store keys must be str, got %.80s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    *key = PyUnicode_AsUTF8AndSize(obj, &n);
    if (*key == NULL) {
        PyErr_Clear();
        PyObject *raw = PyUnicode_EncodeFSDefault(obj);
        if (raw == NULL || PyList_Append(b->keep, raw) != 0) {
            Py_XDECREF(raw);
            return -1;
        }
        Py_DECREF(raw);
        *key = PyBytes_AS_STRING(raw);
        n = PyBytes_GET_SIZE(raw);
    }
    *len = (size_t)n;
    return 0;
}

/* start, step and length of each dimension of `sel` (a tuple of slices, or None: all). */
static int parse_selection(PyObject *sel, int ndim, const int64_t *shape, int64_t *start,
                           int64_t *step, int64_t *len, const char *what, size_t index)
{
    if (sel == Py_None) {
        for (int d = 0; d < ndim; d++) {
            start[d] = 0;
            step[d] = 1;
            len[d] = shape[d];
        }
        return 0;
    }
    if (!PyTuple_Check(sel) || PyTuple_GET_SIZE(sel) != ndim) {
        PyErr_Format(PyExc_ValueError, "item %zu: the %s selection must be a tuple of %d slices",
                     index, what, ndim);
        return -1;
    }
    for (int d = 0; d < ndim; d++) {
        PyObject *s = PyTuple_GET_ITEM(sel, d);
        Py_ssize_t a, b, st;
        if (!PySlice_Check(s)) {
            PyErr_Format(PyExc_ValueError, "item %zu: the %s selection holds %.80s, not a slice",
                         index, what, Py_TYPE(s)->tp_name);
            return -1;
        }
        if (PySlice_Unpack(s, &a, &b, &st) < 0)
            return -1;
        len[d] = PySlice_AdjustIndices((Py_ssize_t)shape[d], &a, &b, st);
        start[d] = a;
        step[d] = st;
    }
    return 0;
}

static int parse_source(batch *b, PyObject *src, ak_read_item *it, ak_result *r, size_t index)
{
    it->length = -1;
    PyObject *whole = src;
    if (PyTuple_Check(src)) {
        long long offset, length;
        if (!PyArg_ParseTuple(src, "OLL", &whole, &offset, &length))
            return -1;
        if (offset < 0 || length < 0) {
            PyErr_Format(PyExc_ValueError, "item %zu: negative byte range (%lld, %lld)", index,
                         offset, length);
            return -1;
        }
        it->offset = offset;
        it->length = length;
    }
    if (whole == Py_None) {
        if (it->length >= 0) {
            PyErr_Format(PyExc_ValueError, "item %zu: a byte range of no source", index);
            return -1;
        }
        it->kind = AK_SRC_NONE;
        return 0;
    }
    if (PyUnicode_Check(whole)) {
        if (!b->have_files) {
            PyErr_Format(PyExc_ValueError, "item %zu: a key, but no files to read it from", index);
            return -1;
        }
        it->kind = AK_SRC_FILE;
        if (key_bytes(b, whole, &it->key, &it->keylen) != 0)
            return -1;
        ak_check_key(it->key, it->keylen, r); /* a bad key is that item's error */
        return 0;
    }
    Py_buffer *view = &b->views[b->nviews];
    if (PyObject_GetBuffer(whole, view, PyBUF_SIMPLE) != 0)
        return -1;
    b->nviews++;
    it->kind = AK_SRC_BUF;
    it->buf = view->buf;
    it->buflen = (size_t)view->len;
    return 0;
}

static int parse_read_items(batch *b, PyObject *seq)
{
    const ak_chain *c = b->job.chain;
    int nd = c->ndim;
    int64_t oshape[AK_MAX_NDIM], cs[AK_MAX_NDIM], cstep[AK_MAX_NDIM], clen[AK_MAX_NDIM];
    int64_t os[AK_MAX_NDIM], ostep[AK_MAX_NDIM], olen[AK_MAX_NDIM];
    for (int d = 0; d < nd; d++)
        oshape[d] = b->array.shape[d];
    for (size_t i = 0; i < b->job.n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, (Py_ssize_t)i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3) {
            PyErr_Format(PyExc_TypeError, "item %zu: expected (source, chunk_sel, out_sel, ...)", i);
            return -1;
        }
        ak_read_item *it = &b->job.reads[i];
        if (parse_source(b, PyTuple_GET_ITEM(item, 0), it, &b->job.results[i], i) != 0 ||
            parse_selection(PyTuple_GET_ITEM(item, 1), nd, c->shape, cs, cstep, clen, "chunk", i) ||
            parse_selection(PyTuple_GET_ITEM(item, 2), nd, oshape, os, ostep, olen, "output", i))
            return -1;
        int64_t *reg = b->job.regions + i * 3 * (size_t)nd;
        int64_t src_off = 0;
        char *dst = b->array.buf;
        int whole = c->swap_unit == 0;
        for (int d = 0; d < nd; d++) {
            if (clen[d] != olen[d]) {
                PyErr_Format(PyExc_ValueError,
                             "item %zu: %lld elements of the chunk along axis %d, %lld in the "
                             "output", i, (long long)clen[d], d, (long long)olen[d]);
                return -1;
            }
            reg[d] = clen[d];
            reg[nd + d] = c->strides[d] * cstep[d];
            reg[2 * nd + d] = b->array.strides[d] * ostep[d];
            src_off += cs[d] * c->strides[d];
            dst += os[d] * b->array.strides[d];
            whole &= cs[d] == 0 && cstep[d] == 1 && clen[d] == c->shape[d] &&
                     (reg[2 * nd + d] == c->strides[d] || c->shape[d] <= 1);
        }
        it->src_off = src_off;
        it->dst = dst;
        it->whole = whole;
    }
    return 0;
}

static int parse_write_items(batch *b, PyObject *seq, int with_keys)
{
    const ak_chain *c = b->job.chain;
    int nd = c->ndim;
    int64_t vshape[AK_MAX_NDIM], vs[AK_MAX_NDIM], vstep[AK_MAX_NDIM], vlen[AK_MAX_NDIM];
    for (int d = 0; d < nd; d++)
        vshape[d] = b->array.shape[d];
    for (size_t i = 0; i < b->job.n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, (Py_ssize_t)i), *sel = item;
        ak_write_item *it = &b->job.writes[i];
        if (with_keys) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2) {
                PyErr_Format(PyExc_TypeError, "item %zu: expected (key, value_sel, ...)", i);
                return -1;
            }
            if (key_bytes(b, PyTuple_GET_ITEM(item, 0), &it->key, &it->keylen) != 0)
                return -1;
            ak_check_key(it->key, it->keylen, &b->job.results[i]);
            sel = PyTuple_GET_ITEM(item, 1);
        }
        if (parse_selection(sel, nd, vshape, vs, vstep, vlen, "value", i) != 0)
            return -1;
        int64_t *reg = b->job.regions + i * 3 * (size_t)nd;
        const char *src = b->array.buf;
        int full = 1, direct = c->swap_unit == 0;
        for (int d = 0; d < nd; d++) {
            if (vlen[d] > c->shape[d]) {
                PyErr_Format(PyExc_ValueError,
                             "item %zu: %lld elements along axis %d, more than the chunk's %lld",
                             i, (long long)vlen[d], d, (long long)c->shape[d]);
                return -1;
            }
            reg[d] = vlen[d];
            reg[nd + d] = b->array.strides[d] * vstep[d];
            reg[2 * nd + d] = c->strides[d];
            src += vs[d] * b->array.strides[d];
            full &= vlen[d] == c->shape[d];
            direct &= reg[nd + d] == c->strides[d] || c->shape[d] <= 1;
        }
        it->src = src;
        it->full = full;
        it->direct = full && direct;
    }
    return 0;
}

static PyObject *errors_list(const batch *b)
{
    PyObject *errors = PyList_New(0);
    if (errors == NULL)
        return NULL;
    for (size_t i = 0; i < b->job.n; i++) {
        const ak_result *r = &b->job.results[i];
        if (r->status < AK_ERR_CODEC)
            continue;
        PyObject *entry = Py_BuildValue("(niiz)", (Py_ssize_t)i, r->status, r->code, r->msg);
        if (entry == NULL || PyList_Append(errors, entry) != 0) {
            Py_XDECREF(entry);
            Py_DECREF(errors);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return errors;
}

static size_t count_status(const batch *b, int status)
{
    size_t n = 0;
    for (size_t i = 0; i < b->job.n; i++)
        n += b->job.results[i].status == status;
    return n;
}

/* (items ok, items with status `other`, bytes read or written, errors) */
static PyObject *outcome(const batch *b, int other)
{
    PyObject *errors = errors_list(b);
    if (errors == NULL)
        return NULL;
    return Py_BuildValue("(nnnN)", (Py_ssize_t)count_status(b, AK_OK),
                         (Py_ssize_t)count_status(b, other), (Py_ssize_t)b->job.io_bytes, errors);
}

static void run(batch *b, int workers)
{
    Py_BEGIN_ALLOW_THREADS
    ak_run(&b->job, workers);
    Py_END_ALLOW_THREADS
}

static PyObject *kernel_read(PyObject *self, PyObject *args)
{
    PyObject *capsule, *out, *items, *files;
    int workers;
    if (!PyArg_ParseTuple(args, "OOOOi", &capsule, &out, &items, &files, &workers))
        return NULL;
    PyObject *seq = PySequence_Tuple(items); /* immutable: its items live until the end */
    if (seq == NULL)
        return NULL;
    batch b;
    PyObject *result = NULL;
    if (batch_init(&b, capsule, out, 1, (size_t)PyTuple_GET_SIZE(seq), AK_READ) == 0 &&
        batch_files(&b, files) == 0 && parse_read_items(&b, seq) == 0) {
        run(&b, workers);
        result = outcome(&b, AK_MISSING);
    }
    batch_free(&b);
    Py_DECREF(seq);
    return result;
}

static int same_parent(const ak_write_item *a, const ak_write_item *b)
{
    const char *sa = memrchr(a->key, '/', a->keylen), *sb = memrchr(b->key, '/', b->keylen);
    size_t la = sa ? (size_t)(sa - a->key) : 0, lb = sb ? (size_t)(sb - b->key) : 0;
    return la == lb && memcmp(a->key, b->key, la) == 0;
}

/* Directories whose every change in the batch was a removal may be left empty: remove
 * them (as LocalStore does), from the deepest up. */
static void prune_emptied(batch *b)
{
    for (size_t i = 0; i < b->job.n; i++) {
        if (b->job.results[i].status != AK_EMPTY)
            continue;
        const ak_write_item *it = &b->job.writes[i];
        int written = 0, seen = 0;
        for (size_t j = 0; j < b->job.n && !written; j++) {
            if (j == i || !same_parent(it, &b->job.writes[j]))
                continue;
            written |= b->job.results[j].status != AK_EMPTY;
            seen |= j < i && b->job.results[j].status == AK_EMPTY;
        }
        const char *slash = memrchr(it->key, '/', it->keylen);
        if (!written && !seen && slash)
            ak_prune(&b->files, it->key, (size_t)(slash - it->key));
    }
}

static PyObject *kernel_write(PyObject *self, PyObject *args)
{
    PyObject *capsule, *value, *items, *files;
    int workers, write_empty;
    if (!PyArg_ParseTuple(args, "OOOOip", &capsule, &value, &items, &files, &workers,
                          &write_empty))
        return NULL;
    PyObject *seq = PySequence_Tuple(items); /* immutable: its items live until the end */
    if (seq == NULL)
        return NULL;
    batch b;
    PyObject *result = NULL;
    if (batch_init(&b, capsule, value, 0, (size_t)PyTuple_GET_SIZE(seq), AK_WRITE) == 0 &&
        batch_files(&b, files) == 0 && parse_write_items(&b, seq, 1) == 0) {
        if (!b.have_files) {
            PyErr_SetString(PyExc_ValueError, "write needs files to write to");
        } else {
            b.job.write_empty = write_empty;
            run(&b, workers);
            if (b.job.n <= 4096) /* pruning is quadratic in the removals of one batch */
                prune_emptied(&b);
            result = outcome(&b, AK_EMPTY);
        }
    }
    batch_free(&b);
    Py_DECREF(seq);
    return result;
}

/* A bytes object of the encoded-size bound per item, which the workers encode into
 * (untouched memory costs nothing until written); shrunk to size afterwards, as
 * numcodecs does with its own output. */
static PyObject *encode_targets(batch *b)
{
    size_t bound = ak_encode_bound(b->job.chain);
    if (bound > PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *chunks = PyList_New((Py_ssize_t)b->job.n);
    for (size_t i = 0; chunks != NULL && i < b->job.n; i++) {
        PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(bound ? bound : 1));
        if (data == NULL) {
            Py_CLEAR(chunks);
            break;
        }
        PyList_SET_ITEM(chunks, (Py_ssize_t)i, data);
        b->job.writes[i].out = (unsigned char *)PyBytes_AS_STRING(data);
        b->job.writes[i].out_cap = bound;
    }
    return chunks;
}

static PyObject *kernel_encode(PyObject *self, PyObject *args)
{
    PyObject *capsule, *value, *sels;
    int workers, write_empty;
    if (!PyArg_ParseTuple(args, "OOOip", &capsule, &value, &sels, &workers, &write_empty))
        return NULL;
    PyObject *seq = PySequence_Tuple(sels);
    if (seq == NULL)
        return NULL;
    batch b;
    PyObject *result = NULL;
    PyObject *chunks = NULL;
    if (batch_init(&b, capsule, value, 0, (size_t)PyTuple_GET_SIZE(seq), AK_ENCODE) == 0 &&
        parse_write_items(&b, seq, 0) == 0 &&
        (chunks = encode_targets(&b)) != NULL) {
        b.job.write_empty = write_empty;
        run(&b, workers);
        for (size_t i = 0; chunks != NULL && i < b.job.n; i++) {
            PyObject **slot = &PyList_GET_ITEM(chunks, (Py_ssize_t)i);
            if (b.job.results[i].status != AK_OK) {
                Py_SETREF(*slot, Py_NewRef(Py_None));
            } else if (_PyBytes_Resize(slot, (Py_ssize_t)b.job.writes[i].out_len) != 0) {
                *slot = Py_NewRef(Py_None); /* (the failed resize freed it) */
                Py_CLEAR(chunks);
            }
        }
        PyObject *errors = chunks ? errors_list(&b) : NULL;
        if (errors != NULL)
            result = Py_BuildValue("(NN)", chunks, errors);
        else
            Py_XDECREF(chunks);
    }
    batch_free(&b);
    Py_DECREF(seq);
    return result;
}

static PyObject *versions(PyObject *self, PyObject *noargs)
{
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:O}", "zstd", ZSTD_versionString(), "blosc",
                         BLOSC_VERSION_STRING, "lz4", LZ4_versionString(), "zlib", zlibVersion(),
                         "openat2", ak_has_openat2 ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"make_chain", make_chain, METH_VARARGS, "A codec chain for the kernel (a capsule)."},
    {"read", kernel_read, METH_VARARGS, "Read, decode and place a batch of chunks."},
    {"write", kernel_write, METH_VARARGS, "Gather, encode and store a batch of chunks."},
    {"encode", kernel_encode, METH_VARARGS, "Gather and encode a batch of chunks."},
    {"versions", versions, METH_NOARGS, "The versions of the linked codec libraries."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ckernel", "asyncarr's native batch kernel (see asyncarr.kernel).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ckernel(void)
{
    ak_probe_openat2();
    pthread_atfork(NULL, NULL, ak_tstate_reset_after_fork);
    return PyModule_Create(&module);
}
