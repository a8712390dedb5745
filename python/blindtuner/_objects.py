"""The package's classes over libblindtuner's pipeline API
(include/blindtuner/pipeline.h).

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
import tempfile
import weakref
from ctypes import POINTER, byref, c_double, c_int, c_size_t, c_uint8, c_void_p

import numpy as np

from . import _lib as L
from ._lib import BlindTunerError

__all__ = ["Client", "EvalBundle", "EncryptedDataset", "Model", "Loss", "Logits", "Answer", "EarlyStopping",
           "Scaler", "Head", "Job", "row_order", "batch_order", "load_head"]


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


def _context(ctx, what):
    """The owner of the parameters: a Client or an EvalBundle."""
    if not isinstance(ctx, (Client, EvalBundle)):
        raise TypeError("%s: a Client or an EvalBundle expected (the parameters the object was made for), got %s"
                        % (what, type(ctx).__name__))
    ctx._check_open()
    return ctx


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


# ---------------------------------------------------------------- module functions
def row_order(seed, n):
    """The client's row order of a training set of n rows from `seed`
    (bt_pipeline_row_order): what `blindtuner encrypt --role train --seed S`
    uses.  Pass it to Client.encrypt(order=...).  int32 array of n indices."""
    lib = L.lib()
    seed = _int(seed, "seed", 0, 2 ** 64 - 1)
    n = _int(n, "n", 1)
    perm = np.empty(n, dtype=np.int32)
    lib.check(lib.bt_pipeline_row_order(seed, n, perm.ctypes.data_as(POINTER(c_int))))
    return perm


def batch_order(seed, epoch, nbatches):
    """The server's batch order in 0-based `epoch` (bt_pipeline_batch_order)."""
    lib = L.lib()
    seed = _int(seed, "seed", 0, 2 ** 64 - 1)
    out = np.empty(_int(nbatches, "nbatches", 1), dtype=np.int32)
    lib.bt_pipeline_batch_order(seed, _int(epoch, "epoch", 0), len(out), out.ctypes.data_as(POINTER(c_int)))
    return out


def load_head(path):
    """A decrypted model (`blindtuner decrypt --out`, Head.save) from a file."""
    return Head.load(path)


# ---------------------------------------------------------------- the client
class Client(_Handle):
    """The client's half: the secret key and everything that crosses from
    plaintext to ciphertext and back.  Make one with Client.keygen, or open
    a saved secret bundle with Client.open / Client.from_bytes."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use Client.keygen(), Client.open() or Client.from_bytes()")

    @classmethod
    def _wrap(cls, ptr, threads=0):
        self = object.__new__(cls)
        self._ptr = None
        self._init_handle()
        self._ptr = ptr
        if threads:
            self._lib.bt_client_set_threads(ptr, threads)
        return self

    def _release(self):
        if self._ptr:
            self._lib.bt_client_free(self._ptr)
        self._ptr = None

    def _params(self):
        self._check_open()
        return self._lib.bt_client_params(self._ptr)

    def _tag_ref(self):
        self._check_open()
        return self._lib.bt_client_tag(self._ptr)

    def _tag(self):
        return L.JobTag.from_address(self._tag_ref())

    @classmethod
    def keygen(cls, dim, classes, batch=1024, preset="train-n16", allow_insecure=False, threads=0):
        """A new key set for `classes` classes of `dim`-dimensional features in
        batches of `batch` rows: (client, eval_bundle).  The evaluation bundle
        is what the server gets (save it or send its to_bytes()); it shares the
        client's parameters, so it keeps the client alive.  INSECURE presets
        (tests only) need allow_insecure=True.  threads: 0 for BT_THREADS or
        all cores."""
        lib = L.lib()
        dim = _int(dim, "dim", 1)
        classes = _int(classes, "classes", 2)
        batch = _int(batch, "batch", 1)
        threads = _int(threads, "threads", 0)
        if not isinstance(preset, str):
            raise TypeError("preset: a name expected (e.g. 'train-n16')")
        ptr = c_void_p()
        eb = L.opaque(L.EVAL_BUNDLE)
        lib.check(lib.bt_client_keygen(preset.encode(), L.ALLOW_INSECURE if allow_insecure else 0, dim, classes,
                                       batch, threads, byref(ptr), eb))
        client = cls._wrap(ptr.value)
        return client, EvalBundle._wrap(eb, None, client)

    @classmethod
    def open(cls, path, allow_insecure=False, threads=0):
        """The client of a saved secret bundle (Client.save, `blindtuner keygen --secret`)."""
        lib = L.lib()
        ptr = c_void_p()
        lib.check(lib.bt_client_open(_path(path), L.ALLOW_INSECURE if allow_insecure else 0, byref(ptr)))
        return cls._wrap(ptr.value, _int(threads, "threads", 0))

    @classmethod
    def from_bytes(cls, data, allow_insecure=False, threads=0):
        """The client of a secret bundle in memory (Client.to_bytes)."""
        lib = L.lib()
        data = _as_bytes(data, "Client.from_bytes")
        ptr = c_void_p()
        lib.check(lib.bt_client_open_buffer(data, len(data), L.ALLOW_INSECURE if allow_insecure else 0, byref(ptr)))
        return cls._wrap(ptr.value, _int(threads, "threads", 0))

    def save(self, path):
        """The secret bundle as a file of mode 0600 (never send it anywhere)."""
        self._check_open()
        self._lib.check(self._lib.bt_client_save(self._ptr, _path(path)))

    def to_bytes(self):
        """The secret bundle in memory: it holds the secret key."""
        self._check_open()
        buf = POINTER(c_uint8)()
        n = c_size_t()
        self._lib.check(self._lib.bt_client_write(self._ptr, byref(buf), byref(n)))
        return self._lib.take_buffer(buf, n)

    def set_threads(self, threads):
        """Threads for the client's operations (0: BT_THREADS or all cores)."""
        self._check_open()
        self._lib.bt_client_set_threads(self._ptr, _int(threads, "threads", 0))

    @property
    def tag(self):
        """The key set's ID (hex) and layout."""
        return _tag_dict(self._tag())

    @property
    def dim(self):
        return self._tag().features - 1

    @property
    def classes(self):
        return self._tag().classes

    @property
    def batch(self):
        return self._tag().batch

    def _describe(self):
        t = self._tag()
        return "key set %s, %d features, %d classes, batches of %d" % (bytes(t.keyset).hex(), t.features - 1,
                                                                       t.classes, t.batch)

    # ---- plaintext to ciphertext ----
    def fit_scaler(self, x):
        """The standardisation (feature means and deviations) of the training
        rows x (float32, n x dim)."""
        self._check_open()
        x = _features(x, self.dim)
        h = L.PlainHead()
        self._lib.check(self._lib.bt_scaler_fit(self._tag_ref(), _ptr(x), x.shape[0], x.shape[1], byref(h)))
        return Scaler._wrap(h, self)

    row_order = staticmethod(row_order)

    def encrypt(self, x, y, scaler, role="train", order=None, progress=None):
        """Encrypts rows x (float32, n x dim) and labels y (integers 0..classes-1;
        None for an unlabelled test set), standardised by `scaler`, in batches.
        role: "train", "val" or "test".  order: None (rows as given) or n row
        indices, normally row_order(seed, n) for a training set.  progress:
        callable(what, done, total), raise in it to cancel."""
        self._check_open()
        if role not in L.ROLES:
            raise ValueError("role: 'train', 'val' or 'test', not %r" % (role,))
        if not isinstance(scaler, Scaler):
            raise TypeError("scaler: a Scaler expected (Client.fit_scaler), got %s" % type(scaler).__name__)
        scaler._check_open()
        x = _features(x, self.dim)
        n = x.shape[0]
        if y is None:
            if role != "test":
                raise ValueError("a %s set needs labels" % role)
        else:
            y = _labels(y, n, self.classes)
        if order is not None:
            order = np.asarray(order)
            if order.dtype.kind not in "iu":
                raise TypeError("order: integer row indices expected, got %s" % order.dtype)
            if order.ndim != 1 or order.shape[0] != n:
                raise ValueError("order: shape %s, expected (%d,): one index per row" % (order.shape, n))
            if int(order.min()) < 0 or int(order.max()) >= n:
                raise ValueError("order: indices must be in 0..%d" % (n - 1))
            order = np.ascontiguousarray(order, dtype=np.int32)
        out = L.opaque(L.DATASET)
        prog = _Progress(progress)
        st = self._lib.bt_client_encrypt(self._ptr, L.ROLES[role], _ptr(x), _ptr(y), n, byref(scaler._h),
                                         _ptr(order), prog.arg, None, out)
        prog.check(self._lib, st)
        return EncryptedDataset._wrap(out, self)

    # ---- ciphertext to plaintext ----
    def _own(self, obj, cls, what):
        if not isinstance(obj, cls):
            raise TypeError("%s: a %s expected, got %s" % (what, cls.__name__, type(obj).__name__))
        obj._check_open()
        _same_params(obj, self, "the %s" % what,
                     "bring it over as the server sends it: %s.from_bytes(data, client)" % cls.__name__)

    def decrypt_model(self, model, scaler):
        """The plaintext head of an encrypted model, with the scaler's
        standardisation: a Head ready for evaluate/predict."""
        self._check_open()
        self._own(model, Model, "model")
        if not isinstance(scaler, Scaler):
            raise TypeError("scaler: a Scaler expected, got %s" % type(scaler).__name__)
        scaler._check_open()
        h = L.PlainHead()
        self._lib.check(self._lib.bt_client_decrypt_model(self._ptr, byref(model._e), byref(scaler._h), byref(h)))
        return Head._wrap(h, self)

    def decrypt_loss(self, loss):
        """The value of an encrypted validation loss (it stays with the client)."""
        self._check_open()
        self._own(loss, Loss, "loss")
        v = c_double()
        self._lib.check(self._lib.bt_client_decrypt_loss(self._ptr, byref(loss._e), byref(v)))
        return v.value

    def decrypt_logits(self, logits):
        """Decrypted logits: float32, rows x classes."""
        self._check_open()
        self._own(logits, Logits, "logits")
        z = np.empty((logits.rows, self.classes), dtype=np.float32)
        self._lib.check(self._lib.bt_client_decrypt_logits(self._ptr, logits._buf, _ptr(z)))
        return z

    def decide(self, stopper, loss):
        """The early-stopping half of the protocol: decrypts the validation loss
        of the next epoch, feeds it to `stopper` (an EarlyStopping, which keeps
        the value in .losses) and returns the one-bit Answer for the server."""
        self._check_open()
        if not isinstance(stopper, EarlyStopping):
            raise TypeError("stopper: an EarlyStopping expected, got %s" % type(stopper).__name__)
        self._own(loss, Loss, "loss")
        v = c_double()
        a = L.Answer()
        self._lib.check(self._lib.bt_client_decide(self._ptr, byref(stopper._es), byref(loss._e), byref(v), byref(a)))
        stopper.losses.append(v.value)
        return Answer._wrap(a, self)


class EarlyStopping:
    """The client's early-stopping rule (bt_early_stop): stop once `patience`
    epochs in a row have not improved on the best validation loss.

    best_epoch is the 1-based epoch of the best loss so far (the number a
    Model's .epoch carries; None before the first), best_loss its value,
    losses every loss seen (they never leave the client)."""

    def __init__(self, patience=3):
        self._lib = L.lib()
        self._es = L.EarlyStop()
        self._lib.bt_early_stop_init(byref(self._es), _int(patience, "patience", 1))
        self.losses = []

    def update(self, loss):
        """Feeds one decrypted loss (Client.decide does it): True to continue."""
        loss = float(loss)
        go_on = self._lib.bt_early_stop_update(byref(self._es), loss)
        self.losses.append(loss)
        return bool(go_on)

    @property
    def patience(self):
        return self._es.patience

    @property
    def epochs(self):
        """Losses seen."""
        return self._es.epochs

    @property
    def best_epoch(self):
        return self._es.best_epoch + 1 if self._es.best_epoch >= 0 else None

    @property
    def best_loss(self):
        return self._es.best if self._es.best_epoch >= 0 else None

    def __repr__(self):
        return "<blindtuner.EarlyStopping patience %d, %d losses, best epoch %s>" % (self.patience, self.epochs,
                                                                                   self.best_epoch)


# ---------------------------------------------------------------- containers
class _Container(_Handle):
    """A pipeline object with a container kind: save/load, to_bytes/from_bytes."""
    KIND = 0

    def _obj(self):
        raise NotImplementedError

    def _params(self):
        self._check_open()
        return self._ctx._params()

    def to_bytes(self):
        """The object as the container it is sent in (the same bytes as its file)."""
        self._check_open()
        return _encode(self._lib, self.KIND, self._obj(), self._params())


class EvalBundle(_Container):
    """The server's keys: evaluation keys (relinearisation, rotations,
    bootstrapping) and the key set's tag; nothing secret.  It owns (or, made
    by keygen, shares with the client) the CKKS parameters every ciphertext
    of the job refers to."""
    KIND = L.EVAL_BUNDLE

    def __init__(self, *args, **kwargs):
        raise TypeError("use Client.keygen(), EvalBundle.load() or EvalBundle.from_bytes()")

    @classmethod
    def _wrap(cls, buf, params, client, threads=0):
        self = object.__new__(cls)
        self._buf, self._own_params, self._client = buf, params, client
        self._init_handle(client)
        if threads:
            self.set_threads(threads)
        return self

    def _release(self):
        self._lib.bt_eval_bundle_clear(self._buf)
        if self._own_params:
            self._lib.bt_ckks_params_free(self._own_params)
        self._own_params = None
        self._client = None

    def _params(self):
        self._check_open()
        return self._client._params() if self._client is not None else self._own_params

    def _obj(self):
        return self._buf

    def _tag_ref(self):
        self._check_open()
        return ctypes.addressof(self._buf)  # the tag is the struct's first field

    def _tag(self):
        return L.EvalBundleView.from_buffer(self._buf).tag

    @classmethod
    def load(cls, path, allow_insecure=False, threads=0):
        """An evaluation bundle from a file (with its own parameters)."""
        lib = L.lib()
        p = c_void_p()
        buf = L.opaque(L.EVAL_BUNDLE)
        lib.check(lib.bt_pipeline_load_eval_bundle(_path(path), L.ALLOW_INSECURE if allow_insecure else 0, byref(p),
                                                   buf))
        return cls._wrap(buf, p.value, None, _int(threads, "threads", 0))

    @classmethod
    def from_bytes(cls, data, allow_insecure=False, threads=0):
        """An evaluation bundle from memory (with its own parameters)."""
        lib = L.lib()
        buf = L.opaque(L.EVAL_BUNDLE)
        p = _decode(lib, L.EVAL_BUNDLE, data, None, buf, L.ALLOW_INSECURE if allow_insecure else 0)
        return cls._wrap(buf, p, None, _int(threads, "threads", 0))

    def save(self, path):
        self._check_open()
        self._lib.check(self._lib.bt_pipeline_save_eval_bundle(_path(path), self._buf))

    def set_threads(self, threads):
        """Threads for the server's operations on these parameters (0: BT_THREADS
        or all cores).  A bundle made by keygen shares them with the client."""
        self._lib.bt_ckks_set_threads(self._params(), _int(threads, "threads", 0))

    @property
    def tag(self):
        self._check_open()
        return _tag_dict(self._tag())

    def _describe(self):
        t = self._tag()
        return "key set %s, layout %d x %d x %d%s" % (bytes(t.keyset).hex(), t.batch, t.features, t.classes,
                                                      ", shares the client's parameters" if self._client else "")


class EncryptedDataset(_Container):
    """An encrypted dataset (Client.encrypt): batches of encrypted rows and labels."""
    KIND = L.DATASET

    @classmethod
    def _wrap(cls, buf, ctx):
        self = object.__new__(cls)
        self._buf, self._ctx = buf, ctx
        self._init_handle(ctx)
        return self

    def _release(self):
        self._lib.bt_enc_dataset_clear(self._buf)

    def _obj(self):
        return self._buf

    def _view(self):
        self._check_open()
        return L.DatasetView.from_buffer(self._buf)

    @classmethod
    def load(cls, path, ctx):
        """A dataset from a file, for the parameters and key set of `ctx` (the
        EvalBundle on the server, the Client on the client)."""
        ctx = _context(ctx, "EncryptedDataset.load")
        lib = L.lib()
        buf = L.opaque(cls.KIND)
        lib.check(lib.bt_pipeline_load_dataset(_path(path), ctx._params(), ctx._tag_ref(), buf))
        return cls._wrap(buf, ctx)

    @classmethod
    def from_bytes(cls, data, ctx):
        ctx = _context(ctx, "EncryptedDataset.from_bytes")
        buf = L.opaque(cls.KIND)
        _decode(L.lib(), cls.KIND, data, ctx, buf)
        return cls._wrap(buf, ctx)

    def save(self, path):
        self._check_open()
        self._lib.check(self._lib.bt_pipeline_save_dataset(_path(path), self._buf))

    @property
    def rows(self):
        return self._view().rows

    @property
    def batches(self):
        return self._view().nbatches

    @property
    def role(self):
        return L.ROLE_NAMES.get(self._view().role, "?")

    @property
    def labelled(self):
        return bool(self._view().labelled)

    @property
    def tag(self):
        return _tag_dict(self._view().tag)

    def _describe(self):
        v = self._view()
        return "%s set, %d rows in %d batches%s" % (L.ROLE_NAMES.get(v.role, "?"), v.rows, v.nbatches,
                                                    ", labelled" if v.labelled else "")


class _Epoch(_Container):
    """One ciphertext of an epoch (bt_enc_epoch)."""

    @classmethod
    def _wrap(cls, e, ctx):
        self = object.__new__(cls)
        self._e, self._ctx = e, ctx
        self._init_handle(ctx)
        return self

    def _release(self):
        if self._e.ct:
            self._lib.bt_ciphertext_free(self._e.ct)
        self._e.ct = None

    def _obj(self):
        return byref(self._e)

    @classmethod
    def load(cls, path, ctx):
        """From a file, for the parameters and key set of `ctx` (Client or EvalBundle)."""
        ctx = _context(ctx, cls.__name__ + ".load")
        lib = L.lib()
        e = L.EncEpoch()
        lib.check(lib.bt_pipeline_load_epoch(_path(path), cls.KIND, ctx._params(), ctx._tag_ref(), byref(e)))
        return cls._wrap(e, ctx)

    @classmethod
    def from_bytes(cls, data, ctx):
        ctx = _context(ctx, cls.__name__ + ".from_bytes")
        e = L.EncEpoch()
        _decode(L.lib(), cls.KIND, data, ctx, byref(e))
        return cls._wrap(e, ctx)

    def save(self, path):
        self._check_open()
        self._lib.check(self._lib.bt_pipeline_save_epoch(_path(path), self.KIND, byref(self._e)))

    @property
    def epoch(self):
        """The 1-based epoch it is of (0: the initial zero model)."""
        self._check_open()
        return self._e.epoch

    @property
    def tag(self):
        self._check_open()
        return _tag_dict(self._e.tag)

    def _describe(self):
        return "of epoch %d" % self._e.epoch


class Model(_Epoch):
    """An encrypted model A = V + iW after an epoch (Job.model)."""
    KIND = L.MODEL


class Loss(_Epoch):
    """An encrypted validation loss of an epoch (Job.loss); only the client can read it."""
    KIND = L.LOSS


class Logits(_Container):
    """Encrypted logits of a dataset (Job.infer); Client.decrypt_logits reads them."""
    KIND = L.LOGITS

    @classmethod
    def _wrap(cls, buf, ctx):
        self = object.__new__(cls)
        self._buf, self._ctx = buf, ctx
        self._init_handle(ctx)
        return self

    def _release(self):
        self._lib.bt_enc_logits_clear(self._buf)

    def _obj(self):
        return self._buf

    def _view(self):
        self._check_open()
        return L.LogitsView.from_buffer(self._buf)

    @classmethod
    def load(cls, path, ctx):
        ctx = _context(ctx, "Logits.load")
        lib = L.lib()
        buf = L.opaque(cls.KIND)
        lib.check(lib.bt_pipeline_load_logits(_path(path), ctx._params(), ctx._tag_ref(), buf))
        return cls._wrap(buf, ctx)

    @classmethod
    def from_bytes(cls, data, ctx):
        ctx = _context(ctx, "Logits.from_bytes")
        buf = L.opaque(cls.KIND)
        _decode(L.lib(), cls.KIND, data, ctx, buf)
        return cls._wrap(buf, ctx)

    def save(self, path):
        self._check_open()
        self._lib.check(self._lib.bt_pipeline_save_logits(_path(path), self._buf))

    @property
    def rows(self):
        return self._view().rows

    @property
    def batches(self):
        return self._view().nbatches

    @property
    def tag(self):
        return _tag_dict(self._view().tag)

    def _describe(self):
        v = self._view()
        return "%d rows in %d batches" % (v.rows, v.nbatches)


class Answer:
    """The client's one bit for an epoch: continue (go_on True) or stop.  The
    only thing that flows back from the client to the server."""

    def __init__(self, *args, **kwargs):
        raise TypeError("answers come from Client.decide(), Answer.load() or Answer.from_bytes()")

    @classmethod
    def _wrap(cls, a, ctx):
        self = object.__new__(cls)
        self._lib, self._a, self._ctx = L.lib(), a, ctx
        return self

    def _params(self):
        return self._ctx._params()

    @property
    def epoch(self):
        return self._a.epoch

    @property
    def go_on(self):
        return bool(self._a.go_on)

    @property
    def tag(self):
        return _tag_dict(self._a.tag)

    def to_bytes(self):
        return _encode(self._lib, L.ANSWER, byref(self._a), self._params())

    def save(self, path):
        self._lib.check(self._lib.bt_pipeline_save_answer(_path(path), self._params(), byref(self._a)))

    @classmethod
    def from_bytes(cls, data, ctx):
        ctx = _context(ctx, "Answer.from_bytes")
        a = L.Answer()
        _decode(L.lib(), L.ANSWER, data, ctx, byref(a))
        return cls._wrap(a, ctx)

    @classmethod
    def load(cls, path, ctx):
        ctx = _context(ctx, "Answer.load")
        lib = L.lib()
        a = L.Answer()
        lib.check(lib.bt_pipeline_load_answer(_path(path), ctx._params(), ctx._tag_ref(), byref(a)))
        return cls._wrap(a, ctx)

    def __repr__(self):
        return "<blindtuner.Answer epoch %d: %s>" % (self.epoch, "continue" if self.go_on else "stop")


# ---------------------------------------------------------------- plaintext heads
class _PlainHead(_Handle):
    """bt_plain_head: the standardisation and, for a Head, the weights.  Needs
    no key; a client it came from (kept alive) gives its files the key set's
    parameter hash."""
    KIND = 0

    def __init__(self, *args, **kwargs):
        raise TypeError("use %s.load() or %s.from_bytes(), or the Client" % ((type(self).__name__,) * 2))

    @classmethod
    def _wrap(cls, h, client):
        self = object.__new__(cls)
        self._h = h
        self._client = client
        self._init_handle()
        return self

    def _release(self):
        self._lib.bt_plain_head_clear(byref(self._h))
        self._client = None

    def _params_or_null(self):
        c = self._client
        return c._params() if c is not None and not c.closed else None

    @classmethod
    def load(cls, path, client=None):
        """From a file; with a client, checked against its key set and parameters."""
        lib = L.lib()
        if client is not None:
            client = _context(client, cls.__name__ + ".load")
        h = L.PlainHead()
        lib.check(lib.bt_pipeline_load_head(_path(path), cls.KIND, client._params() if client is not None else None,
                                            client._tag_ref() if client is not None else None, byref(h)))
        return cls._wrap(h, client if isinstance(client, Client) else None)

    @classmethod
    def from_bytes(cls, data, client=None):
        if client is not None:
            client = _context(client, cls.__name__ + ".from_bytes")
        h = L.PlainHead()
        _decode(L.lib(), cls.KIND, data, client, byref(h))
        return cls._wrap(h, client if isinstance(client, Client) else None)

    def save(self, path):
        """A file of mode 0600."""
        self._check_open()
        self._lib.check(self._lib.bt_pipeline_save_head(_path(path), self.KIND, self._params_or_null(),
                                                        byref(self._h)))

    def to_bytes(self):
        self._check_open()
        p = self._params_or_null()
        if p is not None:
            return _encode(self._lib, self.KIND, byref(self._h), p)
        # bt_pipeline_encode wants parameters; the file writer takes none
        with tempfile.TemporaryDirectory(prefix="blindtuner-") as d:
            f = os.path.join(d, "head.bt")
            self.save(f)
            with open(f, "rb") as fh:
                return fh.read()

    def _vec(self, ptr, n):
        self._check_open()
        return np.ctypeslib.as_array(ptr, shape=(n,)).copy()

    @property
    def dim(self):
        self._check_open()
        return self._h.dim

    @property
    def classes(self):
        self._check_open()
        return self._h.classes

    @property
    def mean(self):
        """Feature means (float64, dim)."""
        return self._vec(self._h.mean, self._h.dim)

    @property
    def sd(self):
        """Feature deviations (float64, dim)."""
        return self._vec(self._h.sd, self._h.dim)

    @property
    def tag(self):
        self._check_open()
        return _tag_dict(self._h.tag)


class Scaler(_PlainHead):
    """The standardisation (x - mean) / sd of the client's training rows
    (Client.fit_scaler); stays with the client."""
    KIND = L.SCALER

    def _describe(self):
        return "%d features" % self._h.dim


class Head(_PlainHead):
    """A decrypted model: logits = W [(x - mean) / sd; 1], with W of shape
    classes x (dim + 1), bias last, in standardised units."""
    KIND = L.PLAIN_MODEL

    @property
    def epoch(self):
        self._check_open()
        return self._h.epoch

    @property
    def weights(self):
        """W (float64, classes x (dim + 1), the bias column last)."""
        self._check_open()
        return self._vec(self._h.w, self._h.classes * (self._h.dim + 1)).reshape(self._h.classes, self._h.dim + 1)

    def logits(self, x):
        """Logits (float64, n x classes) of raw features x (float32, n x dim)."""
        self._check_open()
        x = _features(x, self._h.dim)
        z = np.empty((x.shape[0], self._h.classes), dtype=np.float64)
        self._lib.bt_plain_head_logits(byref(self._h), _ptr(x), x.shape[0], _ptr(z))
        return z

    def evaluate(self, x, y):
        """(accuracy, mean cross-entropy) on labelled rows."""
        self._check_open()
        x = _features(x, self._h.dim)
        y = _labels(y, x.shape[0], self._h.classes)
        acc, loss = c_double(), c_double()
        self._lib.check(self._lib.bt_plain_head_evaluate(byref(self._h), _ptr(x), _ptr(y), x.shape[0], byref(acc),
                                                         byref(loss), None, None))
        return acc.value, loss.value

    def predict(self, x):
        """(labels int64 (n), probabilities float32 (n x classes))."""
        self._check_open()
        x = _features(x, self._h.dim)
        labels = np.empty(x.shape[0], dtype=np.int64)
        prob = np.empty((x.shape[0], self._h.classes), dtype=np.float32)
        self._lib.check(self._lib.bt_plain_head_predict(byref(self._h), _ptr(x), x.shape[0], _ptr(labels),
                                                        _ptr(prob)))
        return labels, prob

    def _describe(self):
        return "epoch %d, %d features, %d classes" % (self._h.epoch, self._h.dim, self._h.classes)


# ---------------------------------------------------------------- the server
class Job(_Handle):
    """A training job on the server: the evaluation bundle and encrypted sets
    only (no secret key).  Each run_epoch() trains one epoch of encrypted
    Nesterov steps and, with a validation set, computes the encrypted
    validation loss; the job then waits (state "wait") for the client's
    Answer.  state: "train", "wait" or "done".  train may be None for an
    inference-only job; val None trains without losses or answers."""

    def __init__(self, eval_bundle, train=None, val=None, epochs=2, lr=0.3, momentum=0.9, seed=1):
        self._ptr = None
        if not isinstance(eval_bundle, EvalBundle):
            raise TypeError("eval_bundle: an EvalBundle expected, got %s" % type(eval_bundle).__name__)
        eval_bundle._check_open()
        for what, d in (("train", train), ("val", val)):
            if d is None:
                continue
            if not isinstance(d, EncryptedDataset):
                raise TypeError("%s: an EncryptedDataset expected, got %s" % (what, type(d).__name__))
            d._check_open()
            _same_params(d, eval_bundle, "the %s set" % what,
                         "load it against the bundle: EncryptedDataset.from_bytes(data, eval_bundle)")
        opts = L.JobOptions(_int(epochs, "epochs", 0), float(lr), float(momentum), _int(seed, "seed", 0, 2 ** 64 - 1))
        self._init_handle(eval_bundle, train, val)
        self._bundle, self._train, self._val = eval_bundle, train, val
        self._opts = opts
        ptr = c_void_p()
        self._lib.check(self._lib.bt_job_new(eval_bundle._params(), eval_bundle._buf,
                                             train._buf if train is not None else None,
                                             val._buf if val is not None else None, byref(opts), byref(ptr)))
        self._ptr = ptr.value

    def _release(self):
        if self._ptr:
            self._lib.bt_job_free(self._ptr)
        self._ptr = None

    @property
    def state(self):
        """"train" (an epoch is ready), "wait" (for the answer to the last
        epoch) or "done" (all epochs trained, or the client said stop)."""
        self._check_open()
        return L.JOB_STATES[self._lib.bt_job_state_of(self._ptr)]

    @property
    def epochs_done(self):
        self._check_open()
        return self._lib.bt_job_epochs_done(self._ptr)

    @property
    def setup_seconds(self):
        """Seconds spent building the server's objects (0 before the first epoch)."""
        self._check_open()
        return self._lib.bt_job_setup_seconds(self._ptr)

    @property
    def epochs(self):
        return self._opts.epochs

    def _describe(self):
        return "%s after %d of %d epochs" % (self.state, self.epochs_done, self._opts.epochs)

    def run_epoch(self, progress=None):
        """Trains the next epoch: a report dict (epoch, steps, train_s,
        validation_s, stats).  progress: callable(what, done, total) with what
        "step" or "validation batch"; raise in it to cancel (the job then stays
        at its last finished epoch)."""
        self._check_open()
        rep = L.JobEpochReport()
        prog = _Progress(progress)
        # A failed or cancelled epoch leaves the job's model mid-epoch while the
        # job still counts the last finished epoch: keep a copy to go back to.
        if self.state != "train":  # the library says why
            self._lib.check(self._lib.bt_job_run_epoch(self._ptr, None, None, byref(rep)))
            raise BlindTunerError("job: no epoch to train (%s)" % self.state)
        saved = self._snapshot()
        try:
            st = self._lib.bt_job_run_epoch(self._ptr, prog.arg, None, byref(rep))
            prog.check(self._lib, st)
        except BaseException:
            try:
                self._lib.check(self._lib.bt_job_restore(self._ptr, byref(saved)))
            except BaseException:
                self.close()  # the model is mid-epoch: unusable
            raise
        finally:
            self._lib.bt_ciphertext_free(saved.a)
        s = rep.stats
        return {"epoch": rep.epoch, "steps": rep.steps, "train_s": rep.train_s, "validation_s": rep.validation_s,
                "stats": {k: getattr(s, k) for k, _ in L.TrainStats._fields_}}

    def _snapshot(self):
        """The job's state with its own copy of the model (free .a): through the
        container codec, which needs no ciphertext-level API."""
        view = L.Checkpoint()
        self._lib.bt_job_checkpoint(self._ptr, byref(view))  # cp.a is the job's model
        data = _encode(self._lib, L.CHECKPOINT, byref(view), self._bundle._params())
        cp = L.Checkpoint()
        _decode(self._lib, L.CHECKPOINT, data, self._bundle, byref(cp))
        cp.answered = view.answered  # in memory only, not in the container
        return cp

    def _copy(self, getter, cls):
        view = L.EncEpoch()
        self._lib.check(getter(self._ptr, byref(view)))  # view.ct points into the job
        data = _encode(self._lib, cls.KIND, byref(view), self._bundle._params())
        e = L.EncEpoch()
        _decode(self._lib, cls.KIND, data, self._bundle, byref(e))
        return cls._wrap(e, self._bundle)

    def model(self):
        """The encrypted model after the last epoch (a copy: it stays valid
        while the job trains on)."""
        self._check_open()
        return self._copy(self._lib.bt_job_model, Model)

    def loss(self):
        """The encrypted validation loss of the last epoch (a copy), for the client."""
        self._check_open()
        return self._copy(self._lib.bt_job_loss, Loss)

    def answer(self, answer):
        """The client's bit for the last epoch: continue or stop.  An answer to
        the last epoch of a job that is done anyway is accepted and ignored."""
        self._check_open()
        if not isinstance(answer, Answer):
            raise TypeError("answer: an Answer expected, got %s" % type(answer).__name__)
        if self.state == "done" and answer.epoch == self.epochs_done:
            return
        self._lib.check(self._lib.bt_job_answer(self._ptr, byref(answer._a)))

    def save_checkpoint(self, path):
        """The training state after the last finished epoch (or answer), as a file."""
        self._check_open()
        cp = L.Checkpoint()
        self._lib.bt_job_checkpoint(self._ptr, byref(cp))  # a view: cp.a is the job's
        self._lib.check(self._lib.bt_pipeline_save_checkpoint(_path(path), byref(cp)))

    def checkpoint_bytes(self):
        """The same in memory."""
        self._check_open()
        cp = L.Checkpoint()
        self._lib.bt_job_checkpoint(self._ptr, byref(cp))
        return _encode(self._lib, L.CHECKPOINT, byref(cp), self._bundle._params())

    def restore(self, source):
        """Continues from a checkpoint (a path, or bytes from checkpoint_bytes):
        made with the same key set, learning rate, momentum and seed.  A job
        restored after an epoch asks for that epoch's answer again."""
        self._check_open()
        b = self._bundle
        cp = L.Checkpoint()
        if isinstance(source, (bytes, bytearray, memoryview)):
            _decode(self._lib, L.CHECKPOINT, source, b, byref(cp))
        else:
            self._lib.check(self._lib.bt_pipeline_load_checkpoint(_path(source), b._params(), b._tag_ref(),
                                                                  byref(cp)))
        try:
            self._lib.check(self._lib.bt_job_restore(self._ptr, byref(cp)))
        finally:
            self._lib.bt_ciphertext_free(cp.a)

    def infer(self, model, dataset, progress=None):
        """Encrypted inference: the Logits of every row of `dataset` under `model`."""
        self._check_open()
        if not isinstance(model, Model):
            raise TypeError("model: a Model expected, got %s" % type(model).__name__)
        if not isinstance(dataset, EncryptedDataset):
            raise TypeError("dataset: an EncryptedDataset expected, got %s" % type(dataset).__name__)
        model._check_open()
        dataset._check_open()
        hint = "load it against the bundle: %s.from_bytes(data, eval_bundle)"
        _same_params(model, self._bundle, "the model", hint % "Model")
        _same_params(dataset, self._bundle, "the dataset", hint % "EncryptedDataset")
        out = L.opaque(L.LOGITS)
        prog = _Progress(progress)
        st = self._lib.bt_job_infer(self._ptr, byref(model._e), dataset._buf, prog.arg, None, out)
        prog.check(self._lib, st)
        return Logits._wrap(out, self._bundle)
