/*
 * Columnar decoding of CQL native-protocol ROWS pages.
 *
 * A page is the part of a RESULT body after its metadata: an int32 row count, then for
 * every row and column a [bytes] cell (an int32 length, negative for NULL, then that many
 * bytes). Decoding takes two passes over the cells. scan() checks the page's structure
 * and measures what each column needs; Python then allocates the output buffers (numpy
 * arrays, bytearrays) and fill() writes every column into them in one row-major pass.
 * Columns whose values must be Python objects come back from fill() as lists.
 *
 * Everything read from the page is bounds-checked: a short or inconsistent page raises
 * ValueError, never reads outside the buffer. Output buffers are checked against what
 * fill() is about to write, so a wrong allocation also raises instead of overflowing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Bumped whenever scan()/fill() change meaning, so that a stale build is not used. */
#define COLUMNAR_ABI 5

/* What fill() makes of one column; cassnb/_frames/plans.py and compiled.py use the numbers. */
enum kind {
    K_SKIP = 0,       /* not wanted: cells are only stepped over */
    K_FIX1 = 1,       /* tinyint: 1 byte */
    K_FIX2 = 2,       /* smallint: 2 big-endian bytes -> native int16 */
    K_FIX4 = 3,       /* int, float: 4 big-endian bytes -> native 32 bits */
    K_FIX8 = 4,       /* bigint, counter, double, timestamp, time -> native 64 bits */
    K_BOOL = 5,       /* boolean: 1 byte -> 0 or 1 */
    K_DATE = 6,       /* date: unsigned days centred on 2**31 -> signed int32 days */
    K_UUID = 7,       /* uuid, timeuuid: 16 bytes as they are */
    K_UTF8 = 8,       /* text: offsets + data, UTF-8 checked */
    K_ASCII = 9,      /* ascii: offsets + data, ASCII checked */
    K_BLOB = 10,      /* blob: offsets + data */
    K_UUID_TEXT = 11, /* uuid as its 36-character text: offsets + data */
    K_UTF8_OBJ = 12,  /* text -> list of str */
    K_ASCII_OBJ = 13, /* ascii -> list of str */
    K_BLOB_OBJ = 14,  /* blob -> list of bytes */
    K_UUID_OBJ = 15,  /* uuid -> list of uuid.UUID */
    K_RAW = 16,       /* any type -> a one-column RESULT body for the driver to decode */
    K_DATE_SECONDS = 17, /* date -> int64 seconds since 1970; NULL -> INT64_MIN (NaT) */
    K_COUNT
};

enum shape { S_SKIP, S_FIXED, S_VARLEN, S_OBJECT, S_RAW };

static const unsigned char SHAPE[K_COUNT] = {
    S_SKIP,   S_FIXED,  S_FIXED,  S_FIXED,  S_FIXED,  S_FIXED,  S_FIXED,  S_FIXED,  S_VARLEN,
    S_VARLEN, S_VARLEN, S_VARLEN, S_OBJECT, S_OBJECT, S_OBJECT, S_OBJECT, S_RAW,    S_FIXED,
};

/* Bytes a non-empty cell must have (0: any length), and bytes written per row. */
static const unsigned char CELL_WIDTH[K_COUNT] = {0, 1, 2, 4, 8, 1, 4, 16, 0, 0, 0, 16, 0, 0, 0, 16, 0, 4};
static const unsigned char OUT_WIDTH[K_COUNT] = {0, 1, 2, 4, 8, 1, 4, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8};

#define UUID_TEXT_LEN 36
/* flags (NO_METADATA), column count, row count */
#define RAW_HEADER 12
#define NO_METADATA_FLAG 0x0004

static PyObject *uuid_type;      /* uuid.UUID */
static PyObject *uuid_safe;      /* uuid.SafeUUID.unknown, what UUID(bytes=...) records */
static PyObject *str_int;        /* "int" */
static PyObject *str_is_safe;    /* "is_safe" */
static PyObject *empty_tuple;

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p) {
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static inline void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Strict UTF-8, as Python's decoder: no overlong forms, surrogates or values past U+10FFFF. */
static int utf8_valid(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t chunk;
            memcpy(&chunk, s + i, 8);
            if ((chunk & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i += 1;
        } else if (c < 0xC2) {
            return 0;
        } else if (c < 0xE0) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c < 0xF0) {
            if (i + 2 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0;
            if (c == 0xED && c1 >= 0xA0) return 0;
            i += 3;
        } else if (c < 0xF5) {
            if (i + 3 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && c1 < 0x90) return 0;
            if (c == 0xF4 && c1 >= 0x90) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static int ascii_valid(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] & 0x80) return 0;
    return 1;
}

static void uuid_text(unsigned char *out, const unsigned char *b) {
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = (unsigned char)hex[b[i] >> 4];
        out[o++] = (unsigned char)hex[b[i] & 0x0F];
    }
}

static PyObject *new_uuid(const unsigned char *b) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *value = PyLong_FromUnsignedNativeBytes(
        b, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    PyObject *value = _PyLong_FromByteArray(b, 16, 0, 0);
#endif
    if (value == NULL) return NULL;
    /* object.__new__ plus object.__setattr__: what UUID(bytes=...) ends up with, without
       running its argument checks for every cell. */
    PyObject *u = PyBaseObject_Type.tp_new((PyTypeObject *)uuid_type, empty_tuple, NULL);
    if (u == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    int failed = PyObject_GenericSetAttr(u, str_int, value) < 0 ||
                 PyObject_GenericSetAttr(u, str_is_safe, uuid_safe) < 0;
    Py_DECREF(value);
    if (failed) {
        Py_DECREF(u);
        return NULL;
    }
    return u;
}

/* Where a page went wrong, reported after the GIL is held again. */
enum problem { P_NONE, P_TRUNCATED, P_WIDTH, P_UTF8, P_ASCII, P_OVERFLOW };

typedef struct {
    enum problem what;
    Py_ssize_t row, column, at, length;
} fault;

static PyObject *raise_fault(const fault *f) {
    switch (f->what) {
    case P_TRUNCATED:
        return PyErr_Format(PyExc_ValueError,
                            "truncated page: row %zd, column %zd needs bytes past the end "
                            "(at byte %zd)",
                            f->row, f->column, f->at);
    case P_WIDTH:
        return PyErr_Format(PyExc_ValueError,
                            "malformed page: row %zd, column %zd has a %zd-byte value where "
                            "the column's type has a fixed width (at byte %zd)",
                            f->row, f->column, f->length, f->at);
    case P_UTF8:
        return PyErr_Format(PyExc_ValueError,
                            "malformed page: row %zd, column %zd is not valid UTF-8 (at byte %zd)",
                            f->row, f->column, f->at);
    case P_ASCII:
        return PyErr_Format(PyExc_ValueError,
                            "malformed page: row %zd, column %zd is not ASCII (at byte %zd)",
                            f->row, f->column, f->at);
    case P_OVERFLOW:
        return PyErr_Format(PyExc_ValueError,
                            "output buffer of column %zd too small at row %zd", f->column,
                            f->row);
    default:
        return PyErr_Format(PyExc_SystemError, "unknown page fault");
    }
}

static int check_kinds(const unsigned char *kinds, Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; c++) {
        if (kinds[c] >= K_COUNT) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %d", (int)kinds[c]);
            return -1;
        }
    }
    return 0;
}

/* Read the row count at `offset`; return the rows to decode (at most `limit` if >= 0). */
static Py_ssize_t read_row_count(const Py_buffer *page, Py_ssize_t offset, Py_ssize_t limit) {
    if (offset < 0 || offset > page->len || page->len - offset < 4) {
        PyErr_Format(PyExc_ValueError, "truncated page: no row count at byte %zd", offset);
        return -1;
    }
    int32_t count = (int32_t)be32((const unsigned char *)page->buf + offset);
    if (count < 0) {
        PyErr_Format(PyExc_ValueError, "malformed page: negative row count %d", (int)count);
        return -1;
    }
    if (limit >= 0 && limit < count) return limit;
    return count;
}

static PyObject *ssize_list(const Py_ssize_t *values, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyLong_FromSsize_t(values[i]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

PyDoc_STRVAR(scan_doc,
             "scan(page, offset, kinds, limit) -> (rows, end, sizes)\n\n"
             "Check the rows of a page and measure its variable-length columns.\n\n"
             "``page[offset:]`` starts with the row count; ``kinds`` holds one kind per "
             "column; at most ``limit`` rows are read (all when negative). ``end`` is the "
             "offset after the last row read; ``sizes[c]`` is the data bytes a variable-"
             "length column needs, or the body size of a raw column.");

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer page;
    Py_ssize_t offset, limit, ncols;
    const unsigned char *kinds;
    if (!PyArg_ParseTuple(args, "y*ny#n", &page, &offset, &kinds, &ncols, &limit)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t *sizes = NULL;
    if (check_kinds(kinds, ncols) < 0) goto done;
    Py_ssize_t rows = read_row_count(&page, offset, limit);
    if (rows < 0) goto done;
    sizes = PyMem_Calloc((size_t)ncols + 1, sizeof(Py_ssize_t));
    if (sizes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++)
        if (SHAPE[kinds[c]] == S_RAW) sizes[c] = RAW_HEADER;

    const unsigned char *buf = (const unsigned char *)page.buf;
    const Py_ssize_t len = page.len;
    Py_ssize_t pos = offset + 4;
    fault f = {P_NONE, 0, 0, 0, 0};
    /* Rows of no columns take no bytes: however many a page claims, there is nothing to
       walk (and a loop over two billion of them would take seconds). */
    for (Py_ssize_t r = 0; r < rows && ncols > 0 && f.what == P_NONE; r++) {
        for (Py_ssize_t c = 0; c < ncols; c++) {
            if (len - pos < 4) {
                f = (fault){P_TRUNCATED, r, c, pos, 0};
                break;
            }
            int32_t n = (int32_t)be32(buf + pos);
            pos += 4;
            unsigned char k = kinds[c];
            if (n < 0) {
                if (SHAPE[k] == S_RAW) sizes[c] += 4;
                continue;
            }
            if (len - pos < n) {
                f = (fault){P_TRUNCATED, r, c, pos, n};
                break;
            }
            switch (SHAPE[k]) {
            case S_FIXED:
            case S_OBJECT:
            case S_VARLEN:
                if (CELL_WIDTH[k] != 0) {
                    /* An empty value of a fixed-width type reads back as NULL. */
                    if (n != 0 && n != CELL_WIDTH[k])
                        f = (fault){P_WIDTH, r, c, pos, n};
                    else if (n != 0 && k == K_UUID_TEXT)
                        sizes[c] += UUID_TEXT_LEN;
                } else if (SHAPE[k] == S_VARLEN) {
                    sizes[c] += n;
                }
                break;
            case S_RAW:
                sizes[c] += 4 + (Py_ssize_t)n;
                break;
            default:
                break;
            }
            if (f.what != P_NONE) break;
            pos += n;
        }
    }
    if (f.what != P_NONE) {
        raise_fault(&f);
        goto done;
    }
    PyObject *size_list = ssize_list(sizes, ncols);
    if (size_list != NULL) result = Py_BuildValue("nnN", rows, pos, size_list);
done:
    PyMem_Free(sizes);
    PyBuffer_Release(&page);
    return result;
}

/* Output state of one column during fill(). */
typedef struct {
    Py_buffer views[3];
    int nviews;
    unsigned char *values; /* fixed: n * OUT_WIDTH */
    unsigned char *mask;   /* fixed, varlen: n bytes, 1 = NULL */
    int mask_zeroed;       /* fixed: the mask holds zeros already; only NULLs are written */
    unsigned char *data;   /* varlen: the bytes; raw: the body */
    Py_ssize_t data_len;
    void *offsets;         /* varlen: n + 1 offsets of 4 or 8 bytes */
    int wide_offsets;
    Py_ssize_t cursor;     /* varlen, raw: bytes written to data */
    Py_ssize_t nulls;      /* NULL cells seen */
    PyObject *list;        /* object: the values */
} column_out;

static inline void set_offset(column_out *o, Py_ssize_t i, Py_ssize_t v) {
    if (o->wide_offsets)
        ((int64_t *)o->offsets)[i] = (int64_t)v;
    else
        ((int32_t *)o->offsets)[i] = (int32_t)v;
}

static int get_writable(PyObject *obj, Py_buffer *view, Py_ssize_t need, Py_ssize_t column,
                        const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < need) {
        PyErr_Format(PyExc_ValueError, "column %zd: %s buffer has %zd bytes, needs %zd", column,
                     what, view->len, need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *out_item(PyObject *outs, Py_ssize_t c, Py_ssize_t want) {
    PyObject *item = PySequence_Fast_GET_ITEM(outs, c);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != want) {
        PyErr_Format(PyExc_TypeError, "column %zd needs a tuple of %zd output buffers", c, want);
        return NULL;
    }
    return item;
}

static int open_column(column_out *o, unsigned char k, PyObject *outs, Py_ssize_t c,
                       Py_ssize_t rows, Py_ssize_t first_row) {
    PyObject *item;
    switch (SHAPE[k]) {
    case S_FIXED:
        /* (values, mask), or (values, mask, zeroed): a true ``zeroed`` says the mask is
           fresh zeroed memory, so that the pages of a column without NULLs are never
           written (nor, for mapped memory, ever backed). */
        item = PySequence_Fast_GET_ITEM(outs, c);
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 3) {
            int zeroed = PyObject_IsTrue(PyTuple_GET_ITEM(item, 2));
            if (zeroed < 0) return -1;
            o->mask_zeroed = zeroed;
        } else if ((item = out_item(outs, c, 2)) == NULL) {
            return -1;
        }
        if (get_writable(PyTuple_GET_ITEM(item, 0), &o->views[0],
                         (first_row + rows) * OUT_WIDTH[k], c, "values") < 0)
            return -1;
        o->nviews = 1;
        if (get_writable(PyTuple_GET_ITEM(item, 1), &o->views[1], first_row + rows, c,
                         "mask") < 0)
            return -1;
        o->nviews = 2;
        o->values = (unsigned char *)o->views[0].buf + first_row * OUT_WIDTH[k];
        o->mask = (unsigned char *)o->views[1].buf + first_row;
        return 0;
    case S_VARLEN:
        if ((item = out_item(outs, c, 3)) == NULL) return -1;
        if (get_writable(PyTuple_GET_ITEM(item, 0), &o->views[0], (rows + 1) * 4, c,
                         "offsets") < 0)
            return -1;
        o->nviews = 1;
        if (o->views[0].len == (rows + 1) * 8) {
            o->wide_offsets = 1;
        } else if (o->views[0].len != (rows + 1) * 4) {
            PyErr_Format(PyExc_ValueError, "column %zd: offsets must be %zd int32 or int64", c,
                         rows + 1);
            return -1;
        }
        if (get_writable(PyTuple_GET_ITEM(item, 1), &o->views[1], 0, c, "data") < 0) return -1;
        o->nviews = 2;
        if (get_writable(PyTuple_GET_ITEM(item, 2), &o->views[2], rows, c, "mask") < 0)
            return -1;
        o->nviews = 3;
        o->offsets = o->views[0].buf;
        o->data = o->views[1].buf;
        o->data_len = o->views[1].len;
        o->mask = o->views[2].buf;
        if (!o->wide_offsets && o->data_len > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "column %zd: too much data for int32 offsets", c);
            return -1;
        }
        set_offset(o, 0, 0);
        return 0;
    case S_OBJECT:
        o->list = PyList_New(rows);
        return o->list == NULL ? -1 : 0;
    case S_RAW:
        if ((item = out_item(outs, c, 1)) == NULL) return -1;
        if (get_writable(PyTuple_GET_ITEM(item, 0), &o->views[0], RAW_HEADER, c, "raw") < 0)
            return -1;
        o->nviews = 1;
        o->data = o->views[0].buf;
        o->data_len = o->views[0].len;
        put_be32(o->data, NO_METADATA_FLAG);
        put_be32(o->data + 4, 1);
        put_be32(o->data + 8, (uint32_t)rows);
        o->cursor = RAW_HEADER;
        return 0;
    default:
        return 0;
    }
}

static void close_column(column_out *o) {
    for (int i = 0; i < o->nviews; i++) PyBuffer_Release(&o->views[i]);
    o->nviews = 0;
    Py_CLEAR(o->list);
}


/* Write one cell that needs no Python object; return 0 or set *f. */
static inline int fill_cell(column_out *o, unsigned char k, const unsigned char *p, int32_t n,
                            Py_ssize_t r, Py_ssize_t c, Py_ssize_t at, fault *f) {
    int null = n < 0 || (n == 0 && CELL_WIDTH[k] != 0);
    if (!null && CELL_WIDTH[k] != 0 && n != CELL_WIDTH[k]) {
        *f = (fault){P_WIDTH, r, c, at, n};
        return -1;
    }
    o->nulls += null;
    switch (k) {
    case K_FIX1:
    case K_BOOL: {
        unsigned char v = null ? 0 : p[0];
        o->values[r] = k == K_BOOL ? (v != 0) : v;
        break;
    }
    case K_FIX2: {
        uint16_t v = null ? 0 : be16(p);
        memcpy(o->values + r * 2, &v, 2);
        break;
    }
    case K_FIX4: {
        uint32_t v = null ? 0 : be32(p);
        memcpy(o->values + r * 4, &v, 4);
        break;
    }
    case K_DATE: {
        uint32_t v = null ? 0 : be32(p) ^ 0x80000000u;
        memcpy(o->values + r * 4, &v, 4);
        break;
    }
    case K_DATE_SECONDS: {
        /* Written in its final form, so that the column's memory is the frame's: a copy
           converting days would need the column's size again. */
        int64_t v = null ? INT64_MIN : (int64_t)(int32_t)(be32(p) ^ 0x80000000u) * 86400;
        memcpy(o->values + r * 8, &v, 8);
        break;
    }
    case K_FIX8: {
        uint64_t v = null ? 0 : be64(p);
        memcpy(o->values + r * 8, &v, 8);
        break;
    }
    case K_UUID:
        if (null)
            memset(o->values + r * 16, 0, 16);
        else
            memcpy(o->values + r * 16, p, 16);
        break;
    case K_UTF8:
    case K_ASCII:
    case K_BLOB:
    case K_UUID_TEXT: {
        if (!null) {
            Py_ssize_t size = k == K_UUID_TEXT ? UUID_TEXT_LEN : n;
            if (o->data_len - o->cursor < size ||
                (!o->wide_offsets && o->cursor + size > INT32_MAX)) {
                *f = (fault){P_OVERFLOW, r, c, at, n};
                return -1;
            }
            if (k == K_UTF8 && !utf8_valid(p, n)) {
                *f = (fault){P_UTF8, r, c, at, n};
                return -1;
            }
            if (k == K_ASCII && !ascii_valid(p, n)) {
                *f = (fault){P_ASCII, r, c, at, n};
                return -1;
            }
            if (k == K_UUID_TEXT)
                uuid_text(o->data + o->cursor, p);
            else if (n > 0)
                memcpy(o->data + o->cursor, p, (size_t)n);
            o->cursor += size;
        }
        set_offset(o, r + 1, o->cursor);
        break;
    }
    case K_RAW: {
        Py_ssize_t size = 4 + (n < 0 ? 0 : n);
        if (o->data_len - o->cursor < size) {
            *f = (fault){P_OVERFLOW, r, c, at, n};
            return -1;
        }
        put_be32(o->data + o->cursor, n < 0 ? 0xFFFFFFFFu : (uint32_t)n);
        if (n > 0) memcpy(o->data + o->cursor + 4, p, (size_t)n);
        o->cursor += size;
        return 0;
    }
    default:
        return 0;
    }
    if (o->mask != NULL && (null || !o->mask_zeroed)) o->mask[r] = (unsigned char)null;
    return 0;
}

static PyObject *object_cell(unsigned char k, const unsigned char *p, int32_t n) {
    if (n < 0 || (n == 0 && k == K_UUID_OBJ)) Py_RETURN_NONE;
    switch (k) {
    case K_UTF8_OBJ:
        return PyUnicode_DecodeUTF8((const char *)p, n, "strict");
    case K_ASCII_OBJ:
        return PyUnicode_DecodeASCII((const char *)p, n, "strict");
    case K_BLOB_OBJ:
        return PyBytes_FromStringAndSize((const char *)p, n);
    case K_UUID_OBJ:
        return new_uuid(p);
    default:
        return PyErr_Format(PyExc_SystemError, "kind %d is not an object kind", (int)k);
    }
}

/* The row-major pass over every cell of the rows asked for. */
static int fill_rows(const unsigned char *buf, Py_ssize_t len, Py_ssize_t pos,
                     const unsigned char *kinds, Py_ssize_t ncols, Py_ssize_t rows,
                     column_out *outs, fault *f) {
    if (ncols == 0) return 0; /* rows of no columns: nothing to write */
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t c = 0; c < ncols; c++) {
            if (len - pos < 4) {
                *f = (fault){P_TRUNCATED, r, c, pos, 0};
                return -1;
            }
            int32_t n = (int32_t)be32(buf + pos);
            pos += 4;
            if (n > 0 && len - pos < n) {
                *f = (fault){P_TRUNCATED, r, c, pos, n};
                return -1;
            }
            unsigned char k = kinds[c];
            if (k != K_SKIP) {
                if (SHAPE[k] == S_OBJECT) {
                    if (CELL_WIDTH[k] != 0 && n > 0 && n != CELL_WIDTH[k]) {
                        *f = (fault){P_WIDTH, r, c, pos, n};
                        return -1;
                    }
                    PyObject *value = object_cell(k, buf + pos, n);
                    if (value == NULL) return -2;
                    outs[c].nulls += value == Py_None;
                    PyList_SET_ITEM(outs[c].list, r, value);
                } else if (fill_cell(&outs[c], k, buf + pos, n, r, c, pos, f) < 0) {
                    return -1;
                }
            }
            if (n > 0) pos += n;
        }
    }
    return 0;
}

PyDoc_STRVAR(fill_doc,
             "fill(page, offset, kinds, rows, outs, first_row=0) -> (objects, nulls)\n\n"
             "Decode ``rows`` rows of a page into the columns' output buffers.\n\n"
             "``outs[c]`` is, by the column's kind: (values, mask) for fixed-width kinds, or "
             "(values, mask, True) when the mask is zeroed memory and only NULLs need writing; "
             "(offsets, data, mask) for variable-length kinds, offsets holding rows + 1 "
             "int32 or int64; (body,) for raw columns, sized as scan() said; None for "
             "skipped and object columns. Returns, per column, the list of values of object "
             "kinds (None for the others) and the count of NULL cells. Fixed-width columns are "
             "written from row ``first_row`` of their buffers on, so that the pages of a read "
             "can go one after another into the same buffers.");

static PyObject *fill(PyObject *module, PyObject *args) {
    Py_buffer page;
    Py_ssize_t offset, rows, ncols, first_row = 0;
    const unsigned char *kinds;
    PyObject *outs_arg;
    if (!PyArg_ParseTuple(args, "y*ny#nO|n", &page, &offset, &kinds, &ncols, &rows, &outs_arg,
                          &first_row))
        return NULL;
    PyObject *result = NULL, *outs = NULL;
    column_out *cols = NULL;
    if (check_kinds(kinds, ncols) < 0) goto done;
    Py_ssize_t available = read_row_count(&page, offset, -1);
    if (available < 0) goto done;
    if (rows < 0 || rows > available) {
        PyErr_Format(PyExc_ValueError, "asked for %zd rows of a page that has %zd", rows,
                     available);
        goto done;
    }
    /* 16: the widest fixed-width value, so that no buffer size below overflows. */
    if (first_row < 0 || first_row > PY_SSIZE_T_MAX / 16 - rows) {
        PyErr_Format(PyExc_ValueError, "first_row %zd is out of range", first_row);
        goto done;
    }
    outs = PySequence_Fast(outs_arg, "outs must be a sequence");
    if (outs == NULL) goto done;
    if (PySequence_Fast_GET_SIZE(outs) != ncols) {
        PyErr_Format(PyExc_ValueError, "outs has %zd entries for %zd columns",
                     PySequence_Fast_GET_SIZE(outs), ncols);
        goto done;
    }
    cols = PyMem_Calloc((size_t)ncols + 1, sizeof(column_out));
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++)
        if (open_column(&cols[c], kinds[c], outs, c, rows, first_row) < 0) goto done;
    /* The GIL stays held: a page takes well under a millisecond, and a thread that lets it
       go waits up to the switch interval (5 ms) to have it back from the driver's thread. */
    fault f = {P_NONE, 0, 0, 0, 0};
    int status = fill_rows(page.buf, page.len, offset + 4, kinds, ncols, rows, cols, &f);
    if (status == -1) raise_fault(&f);
    if (status != 0) goto done;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        if (SHAPE[kinds[c]] == S_RAW && cols[c].cursor != cols[c].data_len) {
            PyErr_Format(PyExc_ValueError, "column %zd: raw body is %zd bytes, %zd written", c,
                         cols[c].data_len, cols[c].cursor);
            goto done;
        }
    }
    PyObject *objects = PyList_New(ncols);
    if (objects == NULL) goto done;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *item = cols[c].list != NULL ? cols[c].list : Py_None;
        Py_INCREF(item);
        PyList_SET_ITEM(objects, c, item);
    }
    Py_ssize_t *nulls = PyMem_Calloc((size_t)ncols + 1, sizeof(Py_ssize_t));
    if (nulls == NULL) {
        Py_DECREF(objects);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) nulls[c] = cols[c].nulls;
    PyObject *null_list = ssize_list(nulls, ncols);
    PyMem_Free(nulls);
    if (null_list == NULL) {
        Py_DECREF(objects);
        goto done;
    }
    result = Py_BuildValue("NN", objects, null_list);
done:
    if (cols != NULL) {
        for (Py_ssize_t c = 0; c < ncols; c++) close_column(&cols[c]);
        PyMem_Free(cols);
    }
    Py_XDECREF(outs);
    PyBuffer_Release(&page);
    return result;
}

PyDoc_STRVAR(valid_utf8_doc, "valid_utf8(data) -> bool\n\nTell whether data is strict UTF-8.");

static PyObject *valid_utf8(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int ok = utf8_valid(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"fill", fill, METH_VARARGS, fill_doc},
    {"valid_utf8", valid_utf8, METH_O, valid_utf8_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "cassnb._frames._native.columnar",
    "Decode CQL ROWS pages into column buffers.",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit_columnar(void) {
    PyObject *uuid = PyImport_ImportModule("uuid");
    if (uuid == NULL) return NULL;
    uuid_type = PyObject_GetAttrString(uuid, "UUID");
    PyObject *safe = PyObject_GetAttrString(uuid, "SafeUUID");
    Py_DECREF(uuid);
    if (uuid_type == NULL || safe == NULL) {
        Py_XDECREF(safe);
        return NULL;
    }
    uuid_safe = PyObject_GetAttrString(safe, "unknown");
    Py_DECREF(safe);
    str_int = PyUnicode_InternFromString("int");
    str_is_safe = PyUnicode_InternFromString("is_safe");
    empty_tuple = PyTuple_New(0);
    if (uuid_safe == NULL || str_int == NULL || str_is_safe == NULL || empty_tuple == NULL)
        return NULL;
    if (!PyType_Check(uuid_type)) {
        PyErr_SetString(PyExc_TypeError, "uuid.UUID is not a class");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ABI", COLUMNAR_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct {
        const char *name;
        int value;
    } names[] = {
        {"K_SKIP", K_SKIP},         {"K_FIX1", K_FIX1},         {"K_FIX2", K_FIX2},
        {"K_FIX4", K_FIX4},         {"K_FIX8", K_FIX8},         {"K_BOOL", K_BOOL},
        {"K_DATE", K_DATE},         {"K_UUID", K_UUID},         {"K_UTF8", K_UTF8},
        {"K_ASCII", K_ASCII},       {"K_BLOB", K_BLOB},         {"K_UUID_TEXT", K_UUID_TEXT},
        {"K_UTF8_OBJ", K_UTF8_OBJ}, {"K_ASCII_OBJ", K_ASCII_OBJ}, {"K_BLOB_OBJ", K_BLOB_OBJ},
        {"K_UUID_OBJ", K_UUID_OBJ}, {"K_RAW", K_RAW},       {"K_DATE_SECONDS", K_DATE_SECONDS},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (PyModule_AddIntConstant(m, names[i].name, names[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
