/* The short path of qwenkit.permute.permute in C: small arrays straight to NumPy's copy, without a Python frame.
 *
 * permute(a, axes=None, out=None, *, threads=None, isa="auto") here handles exactly the first tier of
 * qwenkit.permute.api.permute_python's short path, with the same NumPy calls:
 *
 *   a an exact numpy.ndarray of at least one dimension and fewer than planner.MIN_KERNEL_BYTES bytes (read on every
 *   call, so a test that changes it is obeyed), threads None, isa "auto", and
 *     - no out:  a.transpose(axes).copy()   (PyArray_Transpose after PyArray_IntpConverter, as ndarray.transpose
 *                does, then PyArray_NewCopy in C order, as ndarray.copy does);
 *     - out an exact ndarray of the permuted shape with the identical dtype object:  out[...] = view
 *                (PyArray_CopyInto: NumPy's assignment, which refuses a read-only out and buffers overlap).
 *
 * Every other call (any other argument, type, size, or a keyword it does not know) goes to the Python function
 * given to bind(), with the caller's arguments unchanged, so errors and all other behaviour are that function's.
 * The Python call and its argument checks cost more than NumPy's own copy of a small array; this entry point is
 * what keeps a small permute near np.ascontiguousarray(a.transpose(axes)).
 */
#define PY_SSIZE_T_CLEAN
#include <stddef.h>
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
    if (out == Py_None) {
        PyObject *copy = PyArray_NewCopy((PyArrayObject *)view, NPY_CORDER);
        Py_DECREF(view);
        return copy;
    }
    PyArrayObject *target = (PyArrayObject *)out, *source = (PyArrayObject *)view;
    if (PyArray_DESCR(target) != PyArray_DESCR(array) || PyArray_NDIM(target) != PyArray_NDIM(source)
            || !PyArray_CompareLists(PyArray_DIMS(target), PyArray_DIMS(source), PyArray_NDIM(source))) {
        Py_DECREF(view);
        return NULL; /* the Python function's checks name what is wrong */
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
