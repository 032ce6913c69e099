/* The short path of qwenkit.permute.permute in C: small arrays straight to NumPy's copy, without a Python frame.
 *
 * permute(a, axes=None, out=None, *, threads=None, isa="auto") here handles exactly the first tier of
 * qwenkit.permute.api.permute_python's short path, with the same NumPy calls:
 *
 *   a an exact numpy.ndarray of at least one dimension and fewer than planner.MIN_KERNEL_BYTES bytes (read on every
 *   call, so a test that changes it is obeyed), threads None, isa "auto", and
 *     - no out:  a.transpose(axes).copy()   (PyArray_Transpose after PyArray_IntpConverter, as ndarray.transpose
 *                does, then a new C-order array of the view's shape and dtype object);
 *     - out an exact ndarray of the permuted shape with the identical dtype object:  out[...] = view.
 *
 *   The bytes are moved by copy_elements below when the dtype is a built-in number, bool, float16, datetime or
 *   timedelta of 1 to 16 bytes (bytes are then the whole value, whatever the byte order), the array has at most
 *   FAST_MAX_DIMS dimensions and FAST_MAX_BYTES bytes, and an out is writeable and shares no byte range with the
 *   input; every other case goes to NumPy's own copy (PyArray_NewCopy, or PyArray_CopyInto, which refuses a
 *   read-only out and buffers an overlap). For arrays this small NumPy's copy spends most of its time choosing and
 *   setting up its inner loop (view.copy() of a 4 x 4 float32 view: 553 ns in the call-cost table of the committed
 *   Xeon sweep, for 64 bytes), which a fixed loop does not need.
 *
 * Every other call (any other argument, type, size, or a keyword it does not know) goes to the Python function
 * given to bind(), with the caller's arguments unchanged, so errors and all other behaviour are that function's.
 * The Python call and its argument checks cost more than NumPy's own copy of a small array; this entry point is
 * what keeps a small permute near np.ascontiguousarray(a.transpose(axes)).
 */
#define PY_SSIZE_T_CLEAN
#include <stddef.h>
#include <string.h>
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;   /* the Python permute */
    PyObject *planner;    /* the module holding MIN_KERNEL_BYTES */
    PyObject *limit_name; /* "MIN_KERNEL_BYTES" */
    PyObject *dict;       /* __doc__, __name__, __wrapped__: the Python function's */
} ShortPath;

static PyObject *auto_isa;   /* "auto" */
static PyObject *name_axes, *name_out, *name_threads, *name_isa;

static int is_auto(PyObject *isa) {
    if (isa == auto_isa) return 1;
    if (!PyUnicode_CheckExact(isa)) return 0;
    return PyUnicode_Compare(isa, auto_isa) == 0;
}

static int same_name(PyObject *key, PyObject *name) {
    return key == name || (PyUnicode_CheckExact(key) && PyUnicode_Compare(key, name) == 0);
}

#define FAST_MAX_DIMS 8
/* Above this many bytes NumPy's tuned inner loops catch up with the fixed loop (on the Xeon guest, ad-hoc,
   interleaved: a 16 x 16 float32 transpose 1.24x NumPy allocating and 1.85x into out, 32 x 32 1.06x and 1.45x,
   64 x 64 (16 KiB) 0.87x and 1.02x), so larger arrays keep NumPy's copy. */
#define FAST_MAX_BYTES 4096

/* Whether NumPy's copy of this array's dtype is a copy of its bytes: built-in numbers, bool, float16, datetime64 and
   timedelta64 of 1-16 bytes (no object references, no variable-width strings, no structured fields). */
static int bytes_are_values(PyArrayObject *array) {
    int type = PyArray_TYPE(array), size = (int)PyArray_ITEMSIZE(array);
    int plain = (type >= NPY_BOOL && type <= NPY_CLONGDOUBLE && type != NPY_OBJECT) || type == NPY_HALF
                || type == NPY_DATETIME || type == NPY_TIMEDELTA;
    return plain && (size == 1 || size == 2 || size == 4 || size == 8 || size == 16);
}

/* The byte range [lo, hi) an array's elements lie in. */
static void byte_extent(PyArrayObject *x, char **lo, char **hi) {
    char *start = PyArray_BYTES(x), *end = PyArray_BYTES(x) + PyArray_ITEMSIZE(x);
    for (int d = 0; d < PyArray_NDIM(x); d++) {
        npy_intp step = PyArray_STRIDE(x, d) * (PyArray_DIM(x, d) - 1);
        if (step < 0) start += step; else end += step;
    }
    *lo = start; *hi = end;
}

#define DEFINE_COPY(NAME, SIZE)                                                                          \
    static void NAME(char *dst, npy_intp dst_step, const char *src, npy_intp src_step, npy_intp n) {     \
        for (npy_intp i = 0; i < n; i++, dst += dst_step, src += src_step) memcpy(dst, src, SIZE);       \
    }
DEFINE_COPY(copy_run_1, 1)
DEFINE_COPY(copy_run_2, 2)
DEFINE_COPY(copy_run_4, 4)
DEFINE_COPY(copy_run_8, 8)
DEFINE_COPY(copy_run_16, 16)

/* dst[i] = src[i] for every index of the shared shape, element by element, the last dimension innermost. Adjacent
   dimensions that both arrays lay out as one (stride[d] == stride[d + 1] * dim[d + 1]) are merged first, and
   length-1 dimensions dropped, so a contiguous pair is one run. */
static void copy_elements(PyArrayObject *dst_array, PyArrayObject *src_array) {
    int ndim = 0, size = (int)PyArray_ITEMSIZE(src_array);
    npy_intp dims[FAST_MAX_DIMS], ds[FAST_MAX_DIMS], ss[FAST_MAX_DIMS], idx[FAST_MAX_DIMS] = {0};
    for (int d = 0; d < PyArray_NDIM(src_array); d++) {
        npy_intp n = PyArray_DIM(src_array, d);
        if (n == 0) return;
        if (n == 1) continue;
        npy_intp dstride = PyArray_STRIDE(dst_array, d), sstride = PyArray_STRIDE(src_array, d);
        if (ndim > 0 && ds[ndim - 1] == dstride * n && ss[ndim - 1] == sstride * n) {
            dims[ndim - 1] *= n; ds[ndim - 1] = dstride; ss[ndim - 1] = sstride;
            continue;
        }
        dims[ndim] = n; ds[ndim] = dstride; ss[ndim] = sstride; ndim++;
    }
    char *dst = PyArray_BYTES(dst_array);
    const char *src = PyArray_BYTES(src_array);
    if (ndim == 0) { memcpy(dst, src, size); return; }
    npy_intp n = dims[ndim - 1], dstep = ds[ndim - 1], sstep = ss[ndim - 1];
    if (dstep == size && sstep == size && ndim == 1) { memcpy(dst, src, n * size); return; }
    void (*run)(char *, npy_intp, const char *, npy_intp, npy_intp) =
        size == 1 ? copy_run_1 : size == 2 ? copy_run_2 : size == 4 ? copy_run_4 : size == 8 ? copy_run_8
                                                                                        : copy_run_16;
    for (;;) {
        run(dst, dstep, src, sstep, n);
        int d = ndim - 2;
        for (; d >= 0; d--) {
            dst += ds[d]; src += ss[d];
            if (++idx[d] < dims[d]) break;
            dst -= ds[d] * dims[d]; src -= ss[d] * dims[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}

/* The short path's result, or NULL with no exception set when the call is not for the short path. */
static PyObject *try_short(ShortPath *self, PyObject *a, PyObject *axes, PyObject *out) {
    if (!Py_IS_TYPE(a, &PyArray_Type)) return NULL;
    PyArrayObject *array = (PyArrayObject *)a;
    if (PyArray_NDIM(array) == 0) return NULL;
    PyObject *limit_object = PyObject_GetAttr(self->planner, self->limit_name);
    if (limit_object == NULL) { PyErr_Clear(); return NULL; }
    Py_ssize_t limit = PyLong_AsSsize_t(limit_object);
    Py_DECREF(limit_object);
    if (limit == -1 && PyErr_Occurred()) { PyErr_Clear(); return NULL; }
    if (PyArray_NBYTES(array) >= limit) return NULL;
    if (out != Py_None && !Py_IS_TYPE(out, &PyArray_Type)) return NULL;

    PyObject *view;
    if (axes == Py_None) {
        view = PyArray_Transpose(array, NULL);
    } else {
        PyArray_Dims order = {NULL, 0};
        if (!PyArray_IntpConverter(axes, &order)) return NULL; /* NumPy's exception, as a.transpose(axes) */
        view = PyArray_Transpose(array, &order);
        PyDimMem_FREE(order.ptr);
    }
    if (view == NULL) return NULL;
    PyArrayObject *source = (PyArrayObject *)view;
    const int fast = PyArray_NDIM(source) <= FAST_MAX_DIMS && PyArray_NBYTES(source) <= FAST_MAX_BYTES
                     && bytes_are_values(array);
    if (out == Py_None) {
        if (!fast) {
            PyObject *copy = PyArray_NewCopy(source, NPY_CORDER);
            Py_DECREF(view);
            return copy;
        }
        PyArray_Descr *descr = PyArray_DESCR(source);
        Py_INCREF(descr);
        PyObject *copy = PyArray_NewFromDescr(&PyArray_Type, descr, PyArray_NDIM(source), PyArray_DIMS(source),
                                              NULL, NULL, 0, NULL);
        if (copy != NULL) copy_elements((PyArrayObject *)copy, source);
        Py_DECREF(view);
        return copy;
    }
    PyArrayObject *target = (PyArrayObject *)out;
    if (PyArray_DESCR(target) != PyArray_DESCR(array) || PyArray_NDIM(target) != PyArray_NDIM(source)
            || !PyArray_CompareLists(PyArray_DIMS(target), PyArray_DIMS(source), PyArray_NDIM(source))) {
        Py_DECREF(view);
        return NULL; /* the Python function's checks name what is wrong */
    }
    if (fast && PyArray_ISWRITEABLE(target)) {
        char *in_lo, *in_hi, *out_lo, *out_hi;
        byte_extent(source, &in_lo, &in_hi);
        byte_extent(target, &out_lo, &out_hi);
        if (PyArray_SIZE(target) == 0 || out_hi <= in_lo || in_hi <= out_lo) {
            copy_elements(target, source);
            Py_DECREF(view);
            Py_INCREF(out);
            return out;
        }
    }
    int failed = PyArray_CopyInto(target, source) < 0;
    Py_DECREF(view);
    if (failed) return NULL;
    Py_INCREF(out);
    return out;
}

static PyObject *shortpath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    ShortPath *self = (ShortPath *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *slots[3] = {NULL, Py_None, Py_None}; /* a, axes, out */
    int ours = nargs >= 1 && nargs <= 3;
    for (Py_ssize_t i = 0; ours && i < nargs; i++) slots[i] = args[i];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; ours && k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k), *value = args[nargs + k];
        if (same_name(key, name_out) && nargs < 3) slots[2] = value;
        else if (same_name(key, name_axes) && nargs < 2) slots[1] = value;
        else if (same_name(key, name_threads)) ours = value == Py_None;
        else if (same_name(key, name_isa)) ours = is_auto(value);
        else ours = 0;
    }
    if (ours) {
        PyObject *result = try_short(self, slots[0], slots[1], slots[2]);
        if (result != NULL || PyErr_Occurred()) return result;
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *shortpath_call(PyObject *callable, PyObject *args, PyObject *kwargs) {
    return PyVectorcall_Call(callable, args, kwargs);
}

static int shortpath_traverse(ShortPath *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->planner);
    Py_VISIT(self->dict);
    return 0;
}

static int shortpath_clear(ShortPath *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->planner);
    Py_CLEAR(self->limit_name);
    Py_CLEAR(self->dict);
    return 0;
}

static void shortpath_dealloc(ShortPath *self) {
    PyObject_GC_UnTrack(self);
    shortpath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *shortpath_repr(ShortPath *self) {
    return PyUnicode_FromString("<function permute (qwenkit.permute short path in C)>");
}

/* Bound as a method of instances: plan-free functions in classes are rare, but do what a function would. */
static PyObject *shortpath_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) { Py_INCREF(self); return self; }
    return PyMethod_New(self, obj);
}

/* Pickled by reference, as a function is: the name of the module global it is bound to (qwenkit.permute.api.permute),
 * so multiprocessing can send it to a worker. */
static PyObject *shortpath_reduce(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString("permute");
}

static PyMethodDef shortpath_methods[] = {
    {"__reduce__", shortpath_reduce, METH_NOARGS, "Pickle by reference to qwenkit.permute.api.permute."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ShortPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "qwenkit.permute._shortpath.ShortPath",
    .tp_basicsize = sizeof(ShortPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(ShortPath, vectorcall),
    .tp_call = shortpath_call,
    .tp_dictoffset = offsetof(ShortPath, dict),
    .tp_traverse = (traverseproc)shortpath_traverse,
    .tp_clear = (inquiry)shortpath_clear,
    .tp_dealloc = (destructor)shortpath_dealloc,
    .tp_repr = (reprfunc)shortpath_repr,
    .tp_descr_get = shortpath_get,
    .tp_methods = shortpath_methods,
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_doc = "permute with its short path in C; every other call goes to the Python function it was bound to.",
};

static PyObject *bind(PyObject *module, PyObject *args) {
    PyObject *fallback, *planner;
    if (!PyArg_ParseTuple(args, "OO:bind", &fallback, &planner)) return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "bind(fallback, planner): fallback must be callable");
        return NULL;
    }
    ShortPath *self = PyObject_GC_New(ShortPath, &ShortPathType);
    if (self == NULL) return NULL;
    self->vectorcall = shortpath_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(planner);
    self->planner = planner;
    self->limit_name = PyUnicode_InternFromString("MIN_KERNEL_BYTES");
    self->dict = PyDict_New();
    if (self->limit_name == NULL || self->dict == NULL) { Py_DECREF(self); return NULL; }
    /* what inspect, help() and functools read: the Python function's name, documentation and signature */
    static const char *copied[] = {"__doc__", "__name__", "__qualname__", "__module__"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        PyObject *value = PyObject_GetAttrString(fallback, copied[i]);
        if (value == NULL) { PyErr_Clear(); continue; }
        int failed = PyDict_SetItemString(self->dict, copied[i], value) < 0;
        Py_DECREF(value);
        if (failed) { Py_DECREF(self); return NULL; }
    }
    if (PyDict_SetItemString(self->dict, "__wrapped__", fallback) < 0) { Py_DECREF(self); return NULL; }
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(fallback, planner) -> permute: the short path in C, calling fallback(*args, **kwargs) for every call it "
     "does not take; planner.MIN_KERNEL_BYTES is read on each call."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_shortpath",
    "qwenkit.permute's short path for small arrays, in C (see _shortpath.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__shortpath(void) {
    import_array();
    if (PyType_Ready(&ShortPathType) < 0) return NULL;
    auto_isa = PyUnicode_InternFromString("auto");
    name_axes = PyUnicode_InternFromString("axes");
    name_out = PyUnicode_InternFromString("out");
    name_threads = PyUnicode_InternFromString("threads");
    name_isa = PyUnicode_InternFromString("isa");
    if (!auto_isa || !name_axes || !name_out || !name_threads || !name_isa) return NULL;
    return PyModule_Create(&module);
}
