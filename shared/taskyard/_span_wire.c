/* The common span shape of OTLP, written to the wire without Python's
 * per-byte-string work: taskyard.otel_export's reference encoder, for the
 * spans that are most of a scheduler's export.
 *
 * encode(spans, fallback, span_type, record_type, kinds, codes, default_state)
 * returns the `ScopeSpans.spans` entries of `spans`, joined. A span of
 * exactly `span_type` (the SDK's ReadableSpan), or a record of exactly
 * `record_type` (a SpanRecord: a tuple of the same fields), with scalar
 * attributes in a dict, no events or links and no trace state is written
 * here, field for field as the Python encoder writes it; any other span is
 * `fallback(span)`, which gives its entry as bytes. `kinds` are the SpanKind members in the order of their
 * OTLP values (1 to 5) and `codes` the StatusCode members in the order of
 * theirs (0 to 2): both are found by identity, since hashing an enum member
 * is a Python call. Tests hold the output equal to the SDK's encoding.
 *
 * group(spans, span_type, record_type) returns the spans in lists, one for
 * each resource and scope object they share, in order of first appearance: what the
 * encoder groups by equality next.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Buffer;

/* Arguments every span of one call reads. */
typedef struct {
    PyObject *span_type;
    PyObject *record_type;
    PyObject *kinds;
    PyObject *codes;
    PyObject *default_state;
} Shapes;

/* The result of writing one span: written, not of the common shape (the
 * fallback writes it), or a Python error to raise. */
enum { WRITTEN = 1, UNCOMMON = 0, FAILED = -1 };

static PyObject *NAME, *KIND, *CONTEXT, *PARENT, *START, *END, *ATTRIBUTES;
static PyObject *EVENTS, *LINKS, *STATUS, *STATUS_CODE, *DESCRIPTION;
static PyObject *OWN_RESOURCE, *OWN_SCOPE, *RESOURCE, *SCOPE;

static int reserve(Buffer *buffer, Py_ssize_t more) {
    if (buffer->size + more <= buffer->capacity) {
        return 0;
    }
    Py_ssize_t capacity = buffer->capacity ? buffer->capacity : 1024;
    while (capacity < buffer->size + more) {
        capacity *= 2;
    }
    char *data = PyMem_Realloc(buffer->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return 0;
}

/* Writers below assume the room was reserved. */
static void put(Buffer *buffer, const void *bytes, Py_ssize_t size) {
    memcpy(buffer->data + buffer->size, bytes, size);
    buffer->size += size;
}

static void put_byte(Buffer *buffer, unsigned char byte) {
    buffer->data[buffer->size++] = (char)byte;
}

static void put_varint(Buffer *buffer, uint64_t value) {
    while (value > 0x7F) {
        put_byte(buffer, (unsigned char)(value & 0x7F) | 0x80);
        value >>= 7;
    }
    put_byte(buffer, (unsigned char)value);
}

static Py_ssize_t varint_size(uint64_t value) {
    Py_ssize_t size = 1;
    while (value > 0x7F) {
        value >>= 7;
        size++;
    }
    return size;
}

static void put_fixed(Buffer *buffer, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; i++) {
        put_byte(buffer, (unsigned char)(value >> (8 * i)));
    }
}

/* A non-negative int that fits in `size` bytes, big-endian; 0 if it does
 * not (with no error set). */
static int big_endian(PyObject *number, unsigned char *out, Py_ssize_t size) {
    if (!PyLong_CheckExact(number)) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t needed = PyLong_AsNativeBytes(
        number, out, size,
        Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
            Py_ASNATIVEBYTES_REJECT_NEGATIVE);
    if (needed < 0) {
        PyErr_Clear();
        return 0;
    }
    return needed <= size;
#else
    if (_PyLong_AsByteArray((PyLongObject *)number, out, (size_t)size, 0, 0) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
#endif
}

/* A span id: a non-negative int under 2**64, big-endian (the 128-bit trace
 * id takes the general path); 0 if it is not one (with no error set). */
static int span_id(PyObject *number, unsigned char *out) {
    if (!PyLong_CheckExact(number)) {
        return 0;
    }
    uint64_t value = PyLong_AsUnsignedLongLong(number);
    if (value == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(value >> (56 - 8 * i));
    }
    return 1;
}

/* A UTF-8 view of an exact str; NULL (no error set) for anything else. */
static const char *utf8(PyObject *text, Py_ssize_t *size) {
    if (!PyUnicode_CheckExact(text)) {
        return NULL;
    }
    const char *bytes = PyUnicode_AsUTF8AndSize(text, size);
    if (bytes == NULL) {
        PyErr_Clear(); /* a lone surrogate: the SDK decides */
    }
    return bytes;
}

/* The index of `member` in the tuple `members` by identity, or -1. */
static Py_ssize_t index_of(PyObject *members, PyObject *member) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(members); i++) {
        if (PyTuple_GET_ITEM(members, i) == member) {
            return i;
        }
    }
    return -1;
}

/* One `Span.attributes` entry (field 9): a KeyValue of a scalar AnyValue
 * (string 1, bool 2, int 3, double 4). */
static int put_attribute(Buffer *buffer, PyObject *key, PyObject *value) {
    Py_ssize_t key_size, text_size = 0;
    const char *key_bytes = utf8(key, &key_size);
    const char *text = NULL;
    uint64_t scalar = 0;
    unsigned char kind;
    Py_ssize_t any_size;
    if (key_bytes == NULL || key_size == 0) {
        return UNCOMMON;
    }
    if (PyUnicode_CheckExact(value)) {
        if ((text = utf8(value, &text_size)) == NULL) {
            return UNCOMMON;
        }
        kind = 0x0A;
        any_size = 1 + varint_size((uint64_t)text_size) + text_size;
    } else if (PyBool_Check(value)) {
        kind = 0x10;
        scalar = value == Py_True;
        any_size = 2;
    } else if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (number == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return UNCOMMON;
        }
        kind = 0x18;
        scalar = (uint64_t)number;
        any_size = 1 + varint_size(scalar);
    } else if (PyFloat_CheckExact(value)) {
        double number = PyFloat_AS_DOUBLE(value);
        kind = 0x21;
        memcpy(&scalar, &number, sizeof scalar);
        any_size = 9;
    } else {
        return UNCOMMON;
    }
    Py_ssize_t key_part = 1 + varint_size((uint64_t)key_size) + key_size;
    Py_ssize_t value_part = 1 + varint_size((uint64_t)any_size) + any_size;
    Py_ssize_t entry = key_part + value_part;
    if (reserve(buffer, 1 + varint_size((uint64_t)entry) + entry) < 0) {
        return FAILED;
    }
    put_byte(buffer, 0x4A);
    put_varint(buffer, (uint64_t)entry);
    put_byte(buffer, 0x0A);
    put_varint(buffer, (uint64_t)key_size);
    put(buffer, key_bytes, key_size);
    put_byte(buffer, 0x12);
    put_varint(buffer, (uint64_t)any_size);
    put_byte(buffer, kind);
    if (kind == 0x0A) {
        put_varint(buffer, (uint64_t)text_size);
        put(buffer, text, text_size);
    } else if (kind == 0x21) {
        put_fixed(buffer, scalar, 8);
    } else {
        put_varint(buffer, scalar);
    }
    return WRITTEN;
}

static int put_attributes(Buffer *buffer, PyObject *attributes) {
    if (!PyDict_CheckExact(attributes)) {
        return UNCOMMON;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &position, &key, &value)) {
        int written = put_attribute(buffer, key, value);
        if (written != WRITTEN) {
            return written;
        }
    }
    return WRITTEN;
}

/* Span.status (15): a Status of its description (2) and code (3), proto3
 * leaving out an empty one and a zero. */
static int put_status(Buffer *buffer, PyObject *status, const Shapes *shapes) {
    PyObject *code = PyObject_GetAttr(status, STATUS_CODE);
    PyObject *description = code ? PyObject_GetAttr(status, DESCRIPTION) : NULL;
    int result = FAILED;
    if (description == NULL) {
        PyErr_Clear();
        result = UNCOMMON;
        goto done;
    }
    Py_ssize_t value = index_of(shapes->codes, code), text_size = 0;
    const char *text = "";
    if (value < 0 || (description != Py_None && (text = utf8(description, &text_size)) == NULL)) {
        result = UNCOMMON;
        goto done;
    }
    Py_ssize_t size = (text_size ? 1 + varint_size((uint64_t)text_size) + text_size : 0) +
                      (value ? 2 : 0);
    if (reserve(buffer, 2 + size) < 0) {
        goto done;
    }
    put_byte(buffer, 0x7A);
    put_varint(buffer, (uint64_t)size);
    if (text_size) {
        put_byte(buffer, 0x12);
        put_varint(buffer, (uint64_t)text_size);
        put(buffer, text, text_size);
    }
    if (value) {
        put_byte(buffer, 0x18);
        put_byte(buffer, (unsigned char)value);
    }
    result = WRITTEN;
done:
    Py_XDECREF(code);
    Py_XDECREF(description);
    return result;
}

/* Whether a span's trace state is empty: the default object, or any empty one. */
static int no_trace_state(PyObject *state, const Shapes *shapes) {
    if (state == shapes->default_state) {
        return 1;
    }
    int full = PyObject_IsTrue(state);
    if (full < 0) {
        PyErr_Clear();
        return 0;
    }
    return !full;
}

/* Ids, name and kind, times (Span fields 1, 2, 5, 6, 7, 8). */
static int put_head(Buffer *body, PyObject *const fields[], const Shapes *shapes) {
    PyObject *name = fields[0], *kind = fields[1], *context = fields[2];
    PyObject *start = fields[4], *end = fields[5];
    unsigned char ids[2 + 16 + 2 + 8] = {0x0A, 0x10};
    Py_ssize_t kind_value = index_of(shapes->kinds, kind);
    Py_ssize_t name_size;
    const char *name_bytes = utf8(name, &name_size);
    if (!PyTuple_Check(context) || PyTuple_GET_SIZE(context) != 6 || kind_value < 0 ||
        name_bytes == NULL || !PyLong_CheckExact(start) || !PyLong_CheckExact(end) ||
        !no_trace_state(PyTuple_GET_ITEM(context, 4), shapes)) {
        return UNCOMMON;
    }
    ids[18] = 0x12;
    ids[19] = 0x08;
    if (!big_endian(PyTuple_GET_ITEM(context, 0), ids + 2, 16) ||
        !span_id(PyTuple_GET_ITEM(context, 1), ids + 20)) {
        return UNCOMMON;
    }
    uint64_t start_time = PyLong_AsUnsignedLongLong(start);
    uint64_t end_time = PyLong_AsUnsignedLongLong(end);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return UNCOMMON;
    }
    if (reserve(body, sizeof ids + 11 + name_size + 2 + 18) < 0) {
        return FAILED;
    }
    put(body, ids, sizeof ids);
    put_byte(body, 0x2A);
    put_varint(body, (uint64_t)name_size);
    put(body, name_bytes, name_size);
    put_byte(body, 0x30);
    put_byte(body, (unsigned char)(kind_value + 1));
    put_byte(body, 0x39);
    put_fixed(body, start_time, 8);
    put_byte(body, 0x41);
    put_fixed(body, end_time, 8);
    return WRITTEN;
}

/* Span.flags (16, fixed32: whether the parent is remote is known, and
 * whether it is) and Span.parent_span_id (4). */
static int put_parent(Buffer *body, PyObject *parent) {
    unsigned char id[8];
    int remote = 0;
    if (parent != Py_None) {
        if (!PyTuple_Check(parent) || PyTuple_GET_SIZE(parent) != 6 ||
            !span_id(PyTuple_GET_ITEM(parent, 1), id)) {
            return UNCOMMON;
        }
        if ((remote = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2))) < 0) {
            PyErr_Clear();
            return UNCOMMON;
        }
    }
    if (reserve(body, 6 + 10) < 0) {
        return FAILED;
    }
    put_byte(body, 0x85);
    put_byte(body, 0x01);
    put_fixed(body, remote ? 0x300 : 0x100, 4);
    if (parent != Py_None) {
        put_byte(body, 0x22);
        put_byte(body, 0x08);
        put(body, id, 8);
    }
    return WRITTEN;
}

/* The fields of a ReadableSpan that the common shape reads, in this order. */
static PyObject **const FIELDS[] = {&NAME, &KIND, &CONTEXT, &PARENT, &START, &END,
                                    &ATTRIBUTES, &STATUS, &EVENTS, &LINKS};
#define FIELD_COUNT (sizeof FIELDS / sizeof FIELDS[0])
#define RECORD_FIELDS 8 /* a SpanRecord's: all but the events and links */
#define RECORD_RESOURCE 8
#define RECORD_SCOPE 9

static int put_body(Buffer *body, PyObject *const fields[], const Shapes *shapes) {
    int written = put_head(body, fields, shapes);
    if (written == WRITTEN) {
        written = put_attributes(body, fields[6]);
    }
    if (written == WRITTEN) {
        written = put_status(body, fields[7], shapes);
    }
    if (written == WRITTEN) {
        written = put_parent(body, fields[3]);
    }
    return written;
}

/* One span of the common shape as its `ScopeSpans.spans` entry (2). */
static int put_span(Buffer *out, Buffer *body, PyObject *span, const Shapes *shapes) {
    PyObject *fields[FIELD_COUNT] = {NULL};
    int written = UNCOMMON;
    if ((PyObject *)Py_TYPE(span) == shapes->record_type) {
        /* A record holds the first fields, in order, and has no events or links. */
        if (PyTuple_GET_SIZE(span) < RECORD_FIELDS) {
            return UNCOMMON;
        }
        for (size_t i = 0; i < RECORD_FIELDS; i++) {
            fields[i] = Py_NewRef(PyTuple_GET_ITEM(span, i));
        }
    } else if ((PyObject *)Py_TYPE(span) == shapes->span_type) {
        for (size_t i = 0; i < FIELD_COUNT; i++) {
            if ((fields[i] = PyObject_GetAttr(span, *FIELDS[i])) == NULL) {
                PyErr_Clear();
                goto done;
            }
        }
        int events = PyObject_IsTrue(fields[8]), links = PyObject_IsTrue(fields[9]);
        if (events != 0 || links != 0) {
            PyErr_Clear();
            goto done;
        }
    } else {
        return UNCOMMON;
    }
    body->size = 0;
    written = put_body(body, fields, shapes);
    if (written == WRITTEN) {
        if (reserve(out, 11 + body->size) < 0) {
            written = FAILED;
            goto done;
        }
        put_byte(out, 0x12);
        put_varint(out, (uint64_t)body->size);
        put(out, body->data, body->size);
    }
done:
    for (size_t i = 0; i < FIELD_COUNT; i++) {
        Py_XDECREF(fields[i]);
    }
    return written;
}

static int put_fallback(Buffer *out, PyObject *fallback, PyObject *span) {
    PyObject *encoded = PyObject_CallOneArg(fallback, span);
    if (encoded == NULL) {
        return -1;
    }
    if (!PyBytes_Check(encoded)) {
        PyErr_SetString(PyExc_TypeError, "the fallback must return bytes");
        Py_DECREF(encoded);
        return -1;
    }
    int failed = reserve(out, PyBytes_GET_SIZE(encoded));
    if (!failed) {
        put(out, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    }
    Py_DECREF(encoded);
    return failed;
}

static PyObject *encode(PyObject *module, PyObject *const *args, Py_ssize_t count) {
    (void)module;
    if (count != 7 || !PyTuple_Check(args[4]) || !PyTuple_Check(args[5])) {
        PyErr_SetString(
            PyExc_TypeError,
            "encode(spans, fallback, span_type, record_type, kinds, codes, default_state)");
        return NULL;
    }
    Shapes shapes = {args[2], args[3], args[4], args[5], args[6]};
    PyObject *spans = PySequence_Fast(args[0], "spans must be a sequence");
    if (spans == NULL) {
        return NULL;
    }
    Buffer out = {NULL, 0, 0}, body = {NULL, 0, 0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(spans); i++) {
        PyObject *span = PySequence_Fast_GET_ITEM(spans, i);
        int written = put_span(&out, &body, span, &shapes);
        if (written == FAILED || (written == UNCOMMON && put_fallback(&out, args[1], span) < 0)) {
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(out.data ? out.data : "", out.size);
done:
    PyMem_Free(out.data);
    PyMem_Free(body.data);
    Py_DECREF(spans);
    return result;
}

/* The runs of `group`: one resource and scope object, and their spans. */
typedef struct {
    PyObject *resource;
    PyObject *scope;
    PyObject *spans;
} Run;

/* The resource and scope of `span` (new references), or an error. */
static int resource_and_scope(PyObject *span, PyObject *const *types, PyObject **resource,
                              PyObject **scope) {
    if ((PyObject *)Py_TYPE(span) == types[1] && PyTuple_GET_SIZE(span) > RECORD_SCOPE) {
        *resource = Py_NewRef(PyTuple_GET_ITEM(span, RECORD_RESOURCE));
        *scope = Py_NewRef(PyTuple_GET_ITEM(span, RECORD_SCOPE));
        return 0;
    }
    int own = (PyObject *)Py_TYPE(span) == types[0]; /* its fields, past the properties */
    *resource = PyObject_GetAttr(span, own ? OWN_RESOURCE : RESOURCE);
    *scope = *resource ? PyObject_GetAttr(span, own ? OWN_SCOPE : SCOPE) : NULL;
    return *scope ? 0 : -1;
}

/* The run of `span` among the `*count` in `runs` (room for one a span), added if new. */
static PyObject *run_of(PyObject *span, PyObject *const *types, Run *runs, Py_ssize_t *count) {
    PyObject *resource = NULL, *scope = NULL, *found = NULL;
    if (resource_and_scope(span, types, &resource, &scope) == 0) {
        for (Py_ssize_t i = 0; i < *count && found == NULL; i++) {
            if (runs[i].resource == resource && runs[i].scope == scope) {
                found = runs[i].spans;
            }
        }
        if (found == NULL && (found = PyList_New(0)) != NULL) {
            runs[*count] = (Run){resource, scope, found};
            Py_INCREF(resource);
            Py_INCREF(scope);
            (*count)++;
        }
    }
    Py_XDECREF(resource);
    Py_XDECREF(scope);
    return found;
}

static PyObject *group(PyObject *module, PyObject *const *args, Py_ssize_t count) {
    (void)module;
    if (count != 3) {
        PyErr_SetString(PyExc_TypeError, "group(spans, span_type, record_type)");
        return NULL;
    }
    PyObject *spans = PySequence_Fast(args[0], "spans must be a sequence");
    if (spans == NULL) {
        return NULL;
    }
    Py_ssize_t size = PySequence_Fast_GET_SIZE(spans), runs_count = 0;
    Run *runs = PyMem_Calloc(size ? size : 1, sizeof(Run));
    PyObject *result = runs ? NULL : PyErr_NoMemory();
    for (Py_ssize_t i = 0; runs != NULL && i < size; i++) {
        PyObject *span = PySequence_Fast_GET_ITEM(spans, i);
        PyObject *run = run_of(span, args + 1, runs, &runs_count);
        if (run == NULL || PyList_Append(run, span) < 0) {
            goto done;
        }
    }
    if (runs != NULL && (result = PyList_New(runs_count)) != NULL) {
        for (Py_ssize_t i = 0; i < runs_count; i++) {
            Py_INCREF(runs[i].spans);
            PyList_SET_ITEM(result, i, runs[i].spans);
        }
    }
done:
    for (Py_ssize_t i = 0; i < runs_count; i++) {
        Py_DECREF(runs[i].resource);
        Py_DECREF(runs[i].scope);
        Py_DECREF(runs[i].spans);
    }
    PyMem_Free(runs);
    Py_DECREF(spans);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL,
     "The ScopeSpans.spans entries of spans, joined; see the module's source."},
    {"group", (PyCFunction)(void (*)(void))group, METH_FASTCALL,
     "Spans in lists by the resource and scope objects they share."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "taskyard._span_wire",
    "The common OTLP span shape written in C (taskyard.otel_export's reference).", -1, methods,
};

PyMODINIT_FUNC PyInit__span_wire(void) {
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&NAME, "_name"},        {&KIND, "_kind"},
        {&CONTEXT, "_context"},  {&PARENT, "_parent"},
        {&START, "_start_time"}, {&END, "_end_time"},
        {&ATTRIBUTES, "_attributes"}, {&EVENTS, "_events"},
        {&LINKS, "_links"},      {&STATUS, "_status"},
        {&STATUS_CODE, "_status_code"}, {&DESCRIPTION, "_description"},
        {&OWN_RESOURCE, "_resource"}, {&OWN_SCOPE, "_instrumentation_scope"},
        {&RESOURCE, "resource"}, {&SCOPE, "instrumentation_scope"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
