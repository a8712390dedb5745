"""What every object of the package shares, over libblindtuner's pipeline API
(include/blindtuner/pipeline.h): argument checks, progress callbacks, the
handle with its close(), and container encoding to and from bytes.

Ownership.  Every object that holds library memory (a key set, a ciphertext,
a decrypted head) is a handle: close() frees it (wiping secrets), so does
garbage collection, and `with` closes it at the end of the block.  Objects
whose ciphertexts refer to CKKS parameters keep the object that owns those
parameters (a Client, or an EvalBundle loaded on its own) alive, and closing
that owner first closes everything that depends on it, so a closed object
raises ValueError instead of touching freed memory.
"""
import ctypes
import os
import weakref
from ctypes import POINTER, byref, c_size_t, c_uint8, c_void_p

import numpy as np

from . import _lib as L


# ---------------------------------------------------------------- helpers
def _path(p):
    return os.fsencode(os.fspath(p))


def _as_bytes(data, what):
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("%s: bytes expected, got %s" % (what, type(data).__name__))


def _int(v, what, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError("%s: an integer expected, got %s" % (what, type(v).__name__))
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError("%s is %d, expected %d%s" % (what, v, lo, " to %d" % hi if hi is not None else " or more"))
    return v


def _features(x, dim, what="features"):
    """x as the library wants it: float32, C-contiguous, n x dim, finite."""
    if not isinstance(x, np.ndarray):
        raise TypeError("%s: a numpy array of float32 expected, got %s" % (what, type(x).__name__))
    if x.dtype != np.float32:
        raise TypeError("%s: float32 expected, got %s (convert with x.astype(numpy.float32))" % (what, x.dtype))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError("%s: shape %s, the key set expects (rows, %d)" % (what, x.shape, dim))
    if x.shape[0] < 1:
        raise ValueError("%s: no rows" % what)
    if not np.isfinite(x).all():
        raise ValueError("%s: not every value is finite" % what)
    return np.ascontiguousarray(x)


def _labels(y, n, classes, what="labels"):
    """y as the library wants it: int32, one per row, 0..classes-1."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError("%s: integers expected (int32 or int64), got %s" % (what, y.dtype))
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError("%s: shape %s, expected (%d,): one label per row" % (what, y.shape, n))
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError("%s: values %d..%d, the key set has classes 0..%d" % (what, int(y.min()), int(y.max()),
                                                                              classes - 1))
    return np.ascontiguousarray(y, dtype=np.int32)


def _ptr(a):
    return None if a is None else a.ctypes.data


def _tag_dict(t):
    return {"keyset": bytes(t.keyset).hex(), "batch": t.batch, "features": t.features, "classes": t.classes}


class _Progress:
    """A Python callable(what, done, total) as a bt_progress_fn.  An exception
    it raises (KeyboardInterrupt included: Ctrl-C is seen at the next call)
    cancels the library call, which then fails; check() re-raises it."""

    def __init__(self, fn):
        if fn is not None and not callable(fn):
            raise TypeError("progress: a callable(what, done, total) expected")
        box = [None]

        def cb(user, what, done, total):
            try:
                if fn is not None:
                    fn(what.decode() if what else "", done, total)
                return 0
            except BaseException as e:  # noqa: B902 -- cancels, re-raised by check()
                box[0] = e
                return 1

        self._box = box
        self._c = L.PROGRESS_FN(cb)
        self.arg = ctypes.cast(self._c, c_void_p)

    def check(self, lib, status):
        exc, self._box[0] = self._box[0], None
        if exc is not None:
            raise exc
        lib.check(status)


class _Handle:
    """Library memory with an explicit close()."""
    _closed = True

    def _init_handle(self, *owners):
        self._lib = L.lib()
        self._owners = tuple(o for o in owners if o is not None)
        self._dependents = weakref.WeakSet()
        for o in self._owners:
            o._check_open()
            o._dependents.add(self)
        self._closed = False

    def _check_open(self):
        if self._closed:
            raise ValueError("%s is closed" % type(self).__name__)

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Frees the library memory (secrets are wiped); closes first every
        object that depends on this one.  Idempotent."""
        if self._closed:
            return
        for d in list(self._dependents):
            d.close()
        self._closed = True
        try:
            self._release()
        finally:
            self._owners = ()

    def _release(self):
        raise NotImplementedError

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self._closed:
            return "<blindtuner.%s (closed)>" % type(self).__name__
        return "<blindtuner.%s %s>" % (type(self).__name__, self._describe())

    def _describe(self):
        return ""

def _encode(lib, kind, obj, params):
    buf = POINTER(c_uint8)()
    n = c_size_t()
    lib.check(lib.bt_pipeline_encode(kind, obj, params, byref(buf), byref(n)))
    return lib.take_buffer(buf, n)


def _decode(lib, kind, data, ctx, out, flags=0):
    data = _as_bytes(data, "from_bytes")
    p = c_void_p(ctx._params() if ctx is not None else None)
    expect = ctx._tag_ref() if ctx is not None else None
    lib.check(lib.bt_pipeline_decode(kind, data, len(data), flags, byref(p), expect, out))
    return p.value


def _same_params(a, b, what, hint):
    if a._params() != b._params():
        raise ValueError("%s belongs to other parameters than the %s (each Client and each loaded EvalBundle has "
                         "its own); %s" % (what, type(b).__name__, hint))
