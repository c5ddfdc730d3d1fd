/* buggyext: a C extension with deliberate bugs, one per kind of crash crashcatch reports.
 * Built with -g (and without frame pointers) by examples/build_ext.py. Every crash goes
 * through a few non-inlined C frames so native stacks have something to show. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>

#define NOINLINE __attribute__((noinline))

/* Keeps the compiler from proving the crashes away. */
static volatile int zero = 0;
static int *volatile null_ptr = NULL;

NOINLINE static int deref_null(int depth) {
    if (depth > 0)
        return deref_null(depth - 1) + 1;
    return *null_ptr; /* SIGSEGV */
}

static inline int inlined_helper(int depth) { return deref_null(depth) * 2; }

NOINLINE int buggy_entry(int depth) { return inlined_helper(depth) + 1; }

/* Reads an arbitrary address: SIGSEGV with that address as the fault address. */
NOINLINE static long read_address(unsigned long addr) { return *(volatile long *)addr; }

static PyObject *segfault_at(PyObject *self, PyObject *args) {
    unsigned long addr;
    if (!PyArg_ParseTuple(args, "k", &addr))
        return NULL;
    return PyLong_FromLong(read_address(addr));
}

static PyObject *segfault(PyObject *self, PyObject *args) {
    int depth = 2;
    if (!PyArg_ParseTuple(args, "|i", &depth))
        return NULL;
    return PyLong_FromLong(buggy_entry(depth));
}

NOINLINE static int divide(int a, int b) { return a / b; } /* SIGFPE */

static PyObject *fpe(PyObject *self, PyObject *args) {
    return PyLong_FromLong(divide(1, zero));
}

NOINLINE static void do_abort(void) { abort(); }

static PyObject *sigabrt(PyObject *self, PyObject *args) {
    do_abort();
    Py_RETURN_NONE;
}

NOINLINE static void illegal_instruction(void) { __asm__ volatile("ud2"); }

static PyObject *sigill(PyObject *self, PyObject *args) {
    illegal_instruction();
    Py_RETURN_NONE;
}

/* SIGBUS: touch a page of a file mapping beyond the end of the (emptied) file. */
NOINLINE static int touch_truncated_mapping(void) {
    char path[] = "/tmp/buggyext-sigbus-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return -1;
    unlink(path);
    volatile char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || ftruncate(fd, 0) != 0)
        return -1;
    return p[0];
}

static PyObject *sigbus(PyObject *self, PyObject *args) {
    return PyLong_FromLong(touch_truncated_mapping());
}

/* Unbounded recursion with a frame the optimiser cannot remove. */
NOINLINE static int recurse(int n) {
    volatile char pad[256];
    pad[n & 255] = (char)n;
    return recurse(n + 1) + pad[(n + 1) & 255];
}

static PyObject *stack_overflow(PyObject *self, PyObject *args) {
    Py_BEGIN_ALLOW_THREADS
    recurse(0);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python -> C -> Python -> C: calls `callback`, which is expected to call back in. */
static PyObject *call_back(PyObject *self, PyObject *args) {
    PyObject *callback;
    if (!PyArg_ParseTuple(args, "O", &callback))
        return NULL;
    return PyObject_CallNoArgs(callback);
}

static void *c_thread_main(void *arg) {
    (void)arg;
    usleep(1000);
    deref_null(1);
    return NULL;
}

/* Crashes in a thread Python never saw, while the caller waits. */
static PyObject *crash_in_c_thread(PyObject *self, PyObject *args) {
    pthread_t t;
    pthread_create(&t, NULL, c_thread_main, NULL);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Overwrites malloc's bookkeeping around a small block, then crashes. */
NOINLINE static int scribble(void) {
    char *p = malloc(32);
    memset(p - 16, 0xA5, 4096);
    return deref_null(0);
}

static PyObject *heap_scribble(PyObject *self, PyObject *args) {
    return PyLong_FromLong(scribble());
}

/* Crashes after the calling thread released the GIL (as real extensions often do). */
static PyObject *segfault_without_gil(PyObject *self, PyObject *args) {
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = buggy_entry(1);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(r);
}

/* For the tests' no-allocation check: arm the LD_PRELOADed watcher if present, crash. */
#include <dlfcn.h>
static PyObject *armed_segfault(PyObject *self, PyObject *args) {
    void (*arm)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "noalloc_arm");
    if (arm == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "noalloc.so is not preloaded");
        return NULL;
    }
    arm();
    return PyLong_FromLong(buggy_entry(1));
}

static PyMethodDef methods[] = {
    {"armed_segfault", armed_segfault, METH_NOARGS, "Arm the test allocation watcher, then crash."},
    {"segfault", segfault, METH_VARARGS, "Dereference NULL a few C frames deep."},
    {"segfault_at", segfault_at, METH_VARARGS, "Read from the given address."},
    {"fpe", fpe, METH_NOARGS, "Integer division by zero."},
    {"sigabrt", sigabrt, METH_NOARGS, "Call abort()."},
    {"sigill", sigill, METH_NOARGS, "Execute ud2."},
    {"sigbus", sigbus, METH_NOARGS, "Touch a truncated file mapping."},
    {"stack_overflow", stack_overflow, METH_NOARGS, "Recurse until the C stack overflows."},
    {"call_back", call_back, METH_VARARGS, "Call a Python callable from C."},
    {"crash_in_c_thread", crash_in_c_thread, METH_NOARGS, "Crash in a pthread Python never saw."},
    {"heap_scribble", heap_scribble, METH_NOARGS, "Corrupt the malloc heap, then crash."},
    {"segfault_without_gil", segfault_without_gil, METH_NOARGS, "Crash with the GIL released."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "buggyext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_buggyext(void) { return PyModule_Create(&module); }
