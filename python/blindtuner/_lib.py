"""ctypes layer: finding libblindtuner.so, the few mirrored structs, the
prototypes of the functions the package calls, and the error model.

Nothing here is public API; the classes in blindtuner._client, _containers and _server are.
"""
import ctypes
import ctypes.util
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_long, c_size_t,
                    c_uint, c_uint8, c_uint64, c_void_p)

__all__ = ["BlindTunerError", "lib", "library_path"]

# ---- container kinds (include/blindtuner/io.h) and flags (ckks.h) ----
SECRET_BUNDLE = 8
EVAL_BUNDLE = 9
DATASET = 10
MODEL = 11
CHECKPOINT = 12
LOSS = 13
ANSWER = 14
PLAIN_MODEL = 15
LOGITS = 16
SCALER = 17

ALLOW_INSECURE = 1

# bt_set_role and bt_job_state (include/blindtuner/pipeline.h)
ROLES = {"train": 1, "val": 2, "test": 3}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
JOB_STATES = {1: "train", 2: "wait", 3: "done"}

KEYSET_ID_BYTES = 16


class BlindTunerError(Exception):
    """A call into libblindtuner failed.

    Attributes: status (the negative bt_status code), status_name
    ("BT_E_FORMAT", ...) and message (bt_last_error(), the library's
    one-line explanation).  str() gives "message (STATUS_NAME)".
    """

    def __init__(self, message, status=0, status_name=""):
        super().__init__(message, status, status_name)
        self.message = message
        self.status = status
        self.status_name = status_name

    def __str__(self):
        return "%s (%s)" % (self.message, self.status_name) if self.status_name else self.message


# ---- mirrored structs: only the small, stable ones (sizes checked below) ----
class JobTag(Structure):
    _fields_ = [("keyset", c_uint8 * KEYSET_ID_BYTES), ("batch", c_int), ("features", c_int), ("classes", c_int)]


class PlainHead(Structure):
    _fields_ = [("tag", JobTag), ("epoch", c_int), ("dim", c_int), ("classes", c_int),
                ("mean", POINTER(c_double)), ("sd", POINTER(c_double)), ("w", POINTER(c_double)),
                ("proj", POINTER(c_double))]


class EncEpoch(Structure):
    _fields_ = [("tag", JobTag), ("epoch", c_int), ("ct", c_void_p)]


class Answer(Structure):
    _fields_ = [("tag", JobTag), ("epoch", c_int), ("go_on", c_int)]


class EarlyStop(Structure):
    _fields_ = [("patience", c_int), ("epochs", c_int), ("best_epoch", c_int), ("best", c_double), ("since", c_int),
                ("max_epochs", c_int), ("stopped", c_int)]


class JobOptions(Structure):
    _fields_ = [("epochs", c_int), ("lr", c_double), ("momentum", c_double), ("seed", c_uint64),
                ("coll", c_void_p),  # NULL: one process (MPI ranks are the command's)
                ("accumulate", c_int), ("softmax_bound", c_double)]


class TrainStats(Structure):
    _fields_ = [("matmul_s", c_double), ("softmax_s", c_double), ("bootstrap_s", c_double), ("other_s", c_double),
                ("bootstraps", c_long), ("cmult", c_long), ("mult", c_long), ("rot", c_long)]


class JobEpochReport(Structure):
    _fields_ = [("epoch", c_int), ("steps", c_int), ("train_s", c_double), ("validation_s", c_double),
                ("stats", TrainStats)]


class Checkpoint(Structure):
    """bt_checkpoint: mirrored because a loaded one owns `a` and there is no
    bt_checkpoint_clear to free it."""
    _fields_ = [("tag", JobTag), ("epochs_done", c_int), ("stopped", c_int), ("lr", c_double),
                ("momentum", c_double), ("seed", c_uint64), ("train_s", c_double), ("val_s", c_double),
                ("steps", c_long), ("bootstraps", c_long), ("a", c_void_p), ("answered", c_int)]


# Read-only views of the leading fields of two structs allocated opaquely
# (their sizes are checked against the full layouts below).
class DatasetView(Structure):
    _fields_ = [("tag", JobTag), ("role", c_int), ("rows", c_int), ("nx", c_int), ("nbatches", c_int),
                ("labelled", c_int), ("b", c_void_p), ("share_rank", c_int), ("share_ranks", c_int)]


class LogitsView(Structure):
    _fields_ = [("tag", JobTag), ("rows", c_int), ("nbatches", c_int), ("batch_rows", POINTER(c_int)),
                ("z", c_void_p)]


class EvalBundleView(Structure):
    _fields_ = [("tag", JobTag), ("ek", c_void_p), ("to_sparse", c_void_p), ("to_dense", c_void_p)]


class RemoteUploadResult(Structure):
    _fields_ = [("size", c_uint64), ("resumed_at", c_uint64), ("skipped", c_int), ("retries", c_int)]


# int (*bt_progress_fn)(void *user, const char *what, int done, int total)
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int, c_int)
# int (*bt_remote_progress_fn)(void *user, uint64_t done, uint64_t total)
REMOTE_PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64)

_st = c_int  # bt_status
_p = c_void_p
_PROTOS = {
    # util / status
    "bt_init": (_st, []),
    "bt_status_name": (c_char_p, [c_int]),
    "bt_last_error": (c_char_p, []),
    "bt_clear_error": (None, []),
    "bt_free_secret": (None, [_p, c_size_t]),
    "bt_default_threads": (c_int, []),
    "bt_ckks_set_threads": (None, [_p, c_int]),
    "bt_ckks_params_free": (None, [_p]),
    "bt_ciphertext_free": (None, [_p]),
    # pipeline files and buffers
    "bt_pipeline_sizeof": (c_size_t, [c_int]),
    "bt_pipeline_kind_name": (c_char_p, [c_int]),
    "bt_pipeline_encode": (_st, [c_int, _p, _p, POINTER(POINTER(c_uint8)), POINTER(c_size_t)]),
    "bt_pipeline_decode": (_st, [c_int, c_char_p, c_size_t, c_uint, POINTER(c_void_p), _p, _p]),
    "bt_pipeline_save_eval_bundle": (_st, [c_char_p, _p]),
    "bt_pipeline_load_eval_bundle": (_st, [c_char_p, c_uint, POINTER(c_void_p), _p]),
    "bt_eval_bundle_clear": (None, [_p]),
    "bt_pipeline_save_dataset": (_st, [c_char_p, _p]),
    "bt_pipeline_load_dataset": (_st, [c_char_p, _p, _p, _p]),
    "bt_enc_dataset_clear": (None, [_p]),
    "bt_pipeline_save_epoch": (_st, [c_char_p, c_int, _p]),
    "bt_pipeline_load_epoch": (_st, [c_char_p, c_int, _p, _p, _p]),
    "bt_pipeline_save_checkpoint": (_st, [c_char_p, _p]),
    "bt_pipeline_load_checkpoint": (_st, [c_char_p, _p, _p, _p]),
    "bt_pipeline_save_answer": (_st, [c_char_p, _p, _p]),
    "bt_pipeline_load_answer": (_st, [c_char_p, _p, _p, _p]),
    "bt_pipeline_save_logits": (_st, [c_char_p, _p]),
    "bt_pipeline_load_logits": (_st, [c_char_p, _p, _p, _p]),
    "bt_enc_logits_clear": (None, [_p]),
    "bt_pipeline_save_head": (_st, [c_char_p, c_int, _p, _p]),
    "bt_pipeline_load_head": (_st, [c_char_p, c_int, _p, _p, _p]),
    "bt_plain_head_clear": (None, [_p]),
    "bt_pipeline_row_order": (_st, [c_uint64, c_size_t, POINTER(c_int)]),
    "bt_pipeline_batch_order": (None, [c_uint64, c_int, c_int, POINTER(c_int)]),
    # client
    "bt_client_keygen": (_st, [c_char_p, c_uint, c_int, c_int, c_int, c_int, POINTER(c_void_p), _p]),
    "bt_client_open": (_st, [c_char_p, c_uint, POINTER(c_void_p)]),
    "bt_client_open_buffer": (_st, [c_char_p, c_size_t, c_uint, POINTER(c_void_p)]),
    "bt_client_save": (_st, [_p, c_char_p]),
    "bt_client_write": (_st, [_p, POINTER(POINTER(c_uint8)), POINTER(c_size_t)]),
    "bt_client_free": (None, [_p]),
    "bt_client_params": (c_void_p, [_p]),
    "bt_client_tag": (c_void_p, [_p]),
    "bt_client_set_threads": (None, [_p, c_int]),
    "bt_scaler_fit": (_st, [_p, _p, c_size_t, c_size_t, _p]),
    "bt_scaler_whiten": (_st, [_p, _p, c_size_t, c_double]),
    "bt_scaler_default_ridge": (c_double, [c_size_t, c_size_t]),
    "bt_client_encrypt": (_st, [_p, c_int, _p, _p, c_size_t, _p, _p, _p, _p, _p]),
    "bt_client_decrypt_model": (_st, [_p, _p, _p, _p]),
    "bt_client_decrypt_loss": (_st, [_p, _p, POINTER(c_double)]),
    "bt_client_decrypt_logits": (_st, [_p, _p, _p]),
    "bt_client_decide": (_st, [_p, _p, _p, POINTER(c_double), _p]),
    "bt_early_stop_init": (None, [_p, c_int, c_int]),
    "bt_early_stop_update": (c_int, [_p, c_double]),
    # the plaintext head
    "bt_plain_head_logits": (None, [_p, _p, c_size_t, _p]),
    "bt_plain_head_evaluate": (_st, [_p, _p, _p, c_size_t, POINTER(c_double), POINTER(c_double), _p, _p]),
    "bt_plain_head_predict": (_st, [_p, _p, c_size_t, _p, _p]),
    # the server
    "bt_job_options_init": (None, [_p]),
    "bt_job_new": (_st, [_p, _p, _p, _p, _p, POINTER(c_void_p)]),
    "bt_job_free": (None, [_p]),
    "bt_job_restore": (_st, [_p, _p]),
    "bt_job_checkpoint": (None, [_p, _p]),
    "bt_job_state_of": (c_int, [_p]),
    "bt_job_epochs_done": (c_int, [_p]),
    "bt_job_lr": (c_double, [_p]),
    "bt_job_run_epoch": (_st, [_p, _p, _p, _p]),
    "bt_job_model": (_st, [_p, _p]),
    "bt_job_loss": (_st, [_p, _p]),
    "bt_job_answer": (_st, [_p, _p]),
    "bt_job_infer": (_st, [_p, _p, _p, _p, _p, _p]),
    "bt_job_setup_seconds": (c_double, [_p]),
}

# The client of the training service (include/blindtuner/remote.h): bound on
# first use, as a library built without libcurl has none of them.
_REMOTE_PROTOS = {
    "bt_free": (None, [_p]),
    "bt_remote_create": (_st, [c_char_p, c_char_p, POINTER(c_void_p)]),
    "bt_remote_open": (_st, [c_char_p, c_char_p, c_char_p, POINTER(c_void_p)]),
    "bt_remote_free": (None, [_p]),
    "bt_remote_set_ca": (_st, [_p, c_char_p]),
    "bt_remote_set_chunk": (_st, [_p, c_size_t]),
    "bt_remote_id": (c_char_p, [_p]),
    "bt_remote_server": (c_char_p, [_p]),
    "bt_remote_ca": (c_char_p, [_p]),
    "bt_remote_http_status": (c_long, [_p]),
    "bt_remote_save": (_st, [_p, c_char_p]),
    "bt_remote_load": (_st, [c_char_p, POINTER(c_void_p)]),
    "bt_remote_status": (_st, [_p, _p, POINTER(c_void_p)]),
    "bt_remote_upload": (_st, [_p, c_char_p, c_char_p, REMOTE_PROGRESS_FN, _p, _p]),
    "bt_remote_check_file": (_st, [c_char_p, c_char_p]),
    "bt_remote_start": (_st, [_p, _p, _p]),
    "bt_remote_download": (_st, [_p, c_char_p, c_int, c_char_p]),
    "bt_remote_answer": (_st, [_p, c_int, c_char_p, _p]),
    "bt_remote_infer": (_st, [_p, c_int, _p]),
    "bt_remote_delete": (_st, [_p]),
}

# kind -> the mirrored struct whose size must equal bt_pipeline_sizeof(kind)
_SIZED = {MODEL: EncEpoch, LOSS: EncEpoch, ANSWER: Answer, PLAIN_MODEL: PlainHead, SCALER: PlainHead,
          CHECKPOINT: Checkpoint, DATASET: DatasetView, LOGITS: LogitsView, EVAL_BUNDLE: EvalBundleView}

_here = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("BLINDTUNER_LIB")
    if env:
        return [env]  # an explicit choice: no silent fallback to another build
    out = [os.path.normpath(os.path.join(_here, "..", "..", "build", "libblindtuner.so"))]
    found = ctypes.util.find_library("blindtuner")
    if found:
        out.append(found)
    return out


class _Lib:
    """The loaded library with its prototypes set and its structs checked."""

    def __init__(self):
        errors = []
        self.dll = None
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                errors.append("%s: no such file" % path)
                continue
            try:
                self.dll = ctypes.CDLL(path)
                self.path = path
                break
            except OSError as e:
                errors.append("%s: %s" % (path, e))
        if self.dll is None:
            raise ImportError("blindtuner: cannot load libblindtuner.so (set BLINDTUNER_LIB, or build it with "
                              "`make` so that build/libblindtuner.so exists): " + "; ".join(errors))
        for name, (res, args) in _PROTOS.items():
            try:
                f = getattr(self.dll, name)
            except AttributeError:
                raise ImportError("blindtuner: %s does not export %s (an older or newer library than this "
                                  "package?)" % (self.path, name)) from None
            f.restype = res
            f.argtypes = args
            setattr(self, name, f)
        self.sizeof = {}
        for kind in range(SECRET_BUNDLE, SCALER + 1):
            n = self.bt_pipeline_sizeof(kind)
            if n == 0:
                raise ImportError("blindtuner: bt_pipeline_sizeof(%d) is 0 in %s" % (kind, self.path))
            self.sizeof[kind] = n
        for kind, st in _SIZED.items():
            if ctypes.sizeof(st) != self.sizeof[kind]:
                raise ImportError("blindtuner: %s is %d bytes in %s, the package expects %d: the package and the "
                                  "library do not match" % (st.__name__, self.sizeof[kind], self.path,
                                                            ctypes.sizeof(st)))
        self.check(self.bt_init())
        self._remote = None

    def remote(self):
        """Binds the remote client's functions on first use; raises
        BlindTunerError when the library was built without them."""
        if self._remote is None:
            missing = [n for n in _REMOTE_PROTOS if not hasattr(self.dll, n)]
            if missing:
                raise BlindTunerError("%s was built without the remote client (%s missing): install libcurl "
                                      "(apt-get install libcurl4-gnutls-dev) and rebuild" % (self.path, missing[0]))
            for name, (res, args) in _REMOTE_PROTOS.items():
                f = getattr(self.dll, name)
                f.restype = res
                f.argtypes = args
                setattr(self, name, f)
            self._remote = True
        return self

    def check(self, status):
        """Raises BlindTunerError for a failed bt_status."""
        if status != 0:
            msg = self.bt_last_error()
            name = self.bt_status_name(status)
            raise BlindTunerError(msg.decode("utf-8", "replace") if msg else "failed",
                                  status, name.decode() if name else str(status))

    def take_buffer(self, buf, n):
        """bytes of a buffer the library allocated; the buffer is wiped and freed."""
        try:
            return ctypes.string_at(buf, n.value) if n.value else b""
        finally:
            self.bt_free_secret(buf, n.value)


_lock = threading.Lock()
_loaded = None


def lib():
    """The library, loaded on first use."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _Lib()
    return _loaded


def library_path():
    """The path of the libblindtuner.so in use."""
    return lib().path


def opaque(kind):
    """A zeroed, 8-byte aligned buffer for the caller-owned struct of `kind`."""
    n = lib().sizeof[kind]
    return (c_uint64 * ((n + 7) // 8))()
