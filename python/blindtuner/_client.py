"""The client's side of the protocol: the secret key (Client) with key
generation, the scaler, encryption and decryption; the early-stopping rule
and the one-bit Answer sent back to the server; decrypted heads (Scaler,
Head) with their evaluation on plaintext features.
"""
import os
import tempfile
from ctypes import POINTER, byref, c_double, c_int, c_size_t, c_uint8, c_void_p

import numpy as np

from . import _lib as L
from ._common import (_Handle, _Progress, _as_bytes, _decode, _encode, _features, _int, _labels, _path, _ptr,
                      _same_params, _tag_dict)
from ._containers import EncryptedDataset, EvalBundle, Logits, Loss, Model, _context

__all__ = ["Client", "EarlyStopping", "Answer", "Scaler", "Head", "row_order", "load_head"]


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
    def fit_scaler(self, x, whiten=True, ridge=None):
        """The client's preprocessing of the training rows x (float32, n x
        dim): their standardisation (feature means and deviations) and, with
        whiten (the default, as `blindtuner encrypt`), their whitening with
        the regularisation ridge (None: 2e-3 x dim / n within [1e-6, 1];
        docs/TRAINING.md)."""
        self._check_open()
        x = _features(x, self.dim)
        if ridge is not None and not (whiten and 1e-12 <= float(ridge) <= 1e6):
            raise ValueError("ridge: between 1e-12 and 1e6, and only with whiten")
        h = L.PlainHead()
        self._lib.check(self._lib.bt_scaler_fit(self._tag_ref(), _ptr(x), x.shape[0], x.shape[1], byref(h)))
        scaler = Scaler._wrap(h, self)
        if whiten:
            self._lib.check(self._lib.bt_scaler_whiten(byref(scaler._h), _ptr(x), x.shape[0],
                                                       float(ridge) if ridge is not None else 0.0))
        return scaler

    row_order = staticmethod(row_order)

    def encrypt(self, x, y, scaler, role="train", order=None, progress=None):
        """Encrypts rows x (float32, n x dim) and labels y (integers 0..classes-1;
        None for an unlabelled test set), preprocessed by `scaler`, in batches.
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
        """The plaintext head of an encrypted model, the scaler's whitening
        folded into its weights and its standardisation: a Head ready for
        evaluate/predict."""
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
    epochs in a row have not improved on the best validation loss, or at the
    `epochs`-th epoch (the epochs agreed with the server: the client decrypts
    no loss beyond them, each epoch's once, none after a stop).

    best_epoch is the 1-based epoch of the best loss so far (the number a
    Model's .epoch carries; None before the first), best_loss its value,
    losses every loss seen (they never leave the client)."""

    def __init__(self, epochs, patience=3):
        self._lib = L.lib()
        self._es = L.EarlyStop()
        self._lib.bt_early_stop_init(byref(self._es), _int(patience, "patience", 1), _int(epochs, "epochs", 1))
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
    def max_epochs(self):
        """The epochs agreed with the server."""
        return self._es.max_epochs

    @property
    def stopped(self):
        """True once the answer was stop (or a loss was refused)."""
        return bool(self._es.stopped)

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
    """The client's preprocessing of its rows (Client.fit_scaler): the
    standardisation s = (x - mean) / sd, then, when whitened, u = P s with
    P = projection; stays with the client."""
    KIND = L.SCALER

    def _describe(self):
        return "%d features%s" % (self._h.dim, ", whitened" if self._h.proj else "")

    @property
    def whitened(self):
        self._check_open()
        return bool(self._h.proj)

    @property
    def projection(self):
        """P (float64, dim x dim), or None when the scaler only standardises."""
        self._check_open()
        if not self._h.proj:
            return None
        return self._vec(self._h.proj, self._h.dim * self._h.dim).reshape(self._h.dim, self._h.dim)


class Head(_PlainHead):
    """A decrypted model: logits = W [(x - mean) / sd; 1], with W of shape
    classes x (dim + 1), bias last, in standardised units (a whitening
    projection folded in)."""
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
