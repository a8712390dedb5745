"""The objects that cross between client and server as containers: the
evaluation bundle (the server's keys, owner of the CKKS parameters), encrypted
datasets, models, losses and logits.  Each has save/load and
to_bytes/from_bytes, byte for byte the files of the `blindtuner` command.
"""
import ctypes
from ctypes import byref, c_void_p

from . import _lib as L
from ._common import _Handle, _decode, _encode, _int, _path, _tag_dict

__all__ = ["EvalBundle", "EncryptedDataset", "Model", "Loss", "Logits"]


def _context(ctx, what):
    """The owner of the parameters: a Client or an EvalBundle."""
    from ._client import Client  # the client's module imports this one
    if not isinstance(ctx, (Client, EvalBundle)):
        raise TypeError("%s: a Client or an EvalBundle expected (the parameters the object was made for), got %s"
                        % (what, type(ctx).__name__))
    ctx._check_open()
    return ctx

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
