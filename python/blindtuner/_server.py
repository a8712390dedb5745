"""The server's side of the protocol: a training job (Job) on the evaluation
bundle and encrypted datasets only, and the server's batch order.
"""
from ctypes import POINTER, byref, c_int, c_void_p

import numpy as np

from . import _lib as L
from ._common import _Handle, _Progress, _decode, _encode, _int, _path, _same_params
from ._containers import EncryptedDataset, EvalBundle, Logits, Loss, Model
from ._client import Answer
from ._lib import BlindTunerError

__all__ = ["Job", "batch_order"]


def batch_order(seed, epoch, nbatches):
    """The server's batch order in 0-based `epoch` (bt_pipeline_batch_order)."""
    lib = L.lib()
    seed = _int(seed, "seed", 0, 2 ** 64 - 1)
    out = np.empty(_int(nbatches, "nbatches", 1), dtype=np.int32)
    lib.bt_pipeline_batch_order(seed, _int(epoch, "epoch", 0), len(out), out.ctypes.data_as(POINTER(c_int)))
    return out


# ---------------------------------------------------------------- the server
class Job(_Handle):
    """A training job on the server: the evaluation bundle and encrypted sets
    only (no secret key).  Each run_epoch() trains one epoch of encrypted
    Nesterov steps and, with a validation set, computes the encrypted
    validation loss; the job then waits (state "wait") for the client's
    Answer.  state: "train", "wait" or "done".  train may be None for an
    inference-only job; val None trains without losses or answers.
    accumulate: batches summed into one step (gradient accumulation, a
    step's batch larger than the layout's block; 1 to 64).  lr None: the
    large-batch rule, 0.3 up to a step of 1,024 rows and linear above it
    (2.4 at 8,192; docs/TRAINING.md); a restored job keeps its
    checkpoint's.  The rate in use is Job.lr.  softmax_range None: the
    logits' range the softmax approximation covers is the library's (32); a
    wider one (up to 256) costs bootstraps.  A logit outside the range makes
    the step's output garbage (the validation loss jumps): large batches on
    standardised features take 64 (docs/TRAINING.md)."""

    def __init__(self, eval_bundle, train=None, val=None, epochs=2, lr=None, momentum=0.9, seed=1, accumulate=1,
                 softmax_range=None):
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
        if lr is not None and not 1e-6 <= float(lr) < 1e6:
            raise ValueError("lr: between 1e-6 and 1e6, or None for the large-batch rule")
        if softmax_range is not None and not 1 <= float(softmax_range) <= 256:
            raise ValueError("softmax_range: between 1 and 256, or None for the default (32)")
        opts = L.JobOptions(_int(epochs, "epochs", 0), 0.0 if lr is None else float(lr), float(momentum), _int(seed, "seed", 0, 2 ** 64 - 1),
                            None, _int(accumulate, "accumulate", 1, 64),
                            0.0 if softmax_range is None else float(softmax_range))
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
    def lr(self):
        """The learning rate the job trains with (the rule's when lr was None)."""
        self._check_open()
        return self._lib.bt_job_lr(self._ptr)

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
