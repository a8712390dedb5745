"""The client of a BlindTuner training service (`blindtuner serve`, the HTTP
API of docs/API.md): Remote, over the library's remote layer
(include/blindtuner/remote.h, libcurl).

A Remote is one job on the service, reached with the server's URL, the job's
id and its capability token.  Whoever has the token can read, answer and
delete the job: the token stays inside the library (wiped when the Remote is
closed), never in a URL, a repr or an exception; save() writes it to a job
file of mode 0600.  Use https:// for any server beyond this machine.

What goes to the server: the evaluation bundle and the encrypted datasets
(a secret bundle is refused before a byte is sent), the training options and
the one-bit answers.  What comes back: encrypted losses, models and logits,
loaded against the client's (or an evaluation bundle's) key set, which checks
them as hostile input.  Decrypting stays the Client's job, on this machine.
"""
import ctypes
import json
import os
import shutil
import tempfile
import threading
import time
from ctypes import byref, c_void_p

from . import _lib as L
from ._client import Answer
from ._common import _Handle, _int, _path
from ._containers import EncryptedDataset, EvalBundle, Logits, Loss, Model, _context

__all__ = ["Remote"]

_FILES = ("eval", "train", "val", "test")
_FINAL = ("done", "failed")


def _s(v, what):
    if not isinstance(v, (str, bytes, os.PathLike)):
        raise TypeError("%s: a string expected, got %s" % (what, type(v).__name__))
    return os.fsencode(v) if not isinstance(v, bytes) else v


class _UploadProgress:
    """callable(done, total) as a bt_remote_progress_fn; an exception it
    raises (KeyboardInterrupt included) cancels the upload and is re-raised."""

    def __init__(self, fn):
        if fn is not None and not callable(fn):
            raise TypeError("progress: a callable(done, total) expected")
        self.exc = None

        def cb(user, done, total):
            try:
                if fn is not None:
                    fn(done, total)
                return 0
            except BaseException as e:  # noqa: B902 -- cancels, re-raised below
                self.exc = e
                return 1

        self.c = L.REMOTE_PROGRESS_FN(cb)


class Remote(_Handle):
    """A job on a training service.  Remote.create(url) makes a new one,
    Remote.open(url, id, token) and Remote.load(path) reach an existing one.

    The protocol over HTTP (client, scaler, train, val as in the package's
    docstring; the server never sees the client)::

        with bt.Remote.create("https://server:8443", ca="server.pem") as r:
            r.upload("eval", bundle); r.upload("train", train); r.upload("val", val)
            r.save("job.json")                      # the token: keep it like a password
            r.start(epochs=5, lr=0.3)
            stop = bt.EarlyStopping(epochs=5)
            while (s := r.wait())["state"] == "waiting":
                r.answer(client.decide(stop, r.loss(s["waiting_epoch"], client)))
            head = client.decrypt_model(r.model(stop.best_epoch, client), scaler)

    Library failures raise BlindTunerError (its message names the request, the
    server's explanation and the HTTP status; .http_status on the Remote holds
    the status, 0 when no answer came).  A Remote serialises its calls: use
    one per thread for parallel requests.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("a Remote comes from Remote.create(), Remote.open() or Remote.load()")

    @classmethod
    def _wrap(cls, ptr):
        self = object.__new__(cls)
        self._ptr = ptr
        self._mutex = threading.Lock()
        self._init_handle()
        self._lib = L.lib().remote()
        return self

    @classmethod
    def _make(cls, fn, *args):
        lib = L.lib().remote()
        out = c_void_p()
        lib.check(fn(lib)(*args, byref(out)))
        return cls._wrap(out)

    @classmethod
    def create(cls, url, ca=None, chunk=None):
        """A new job on the server at `url` (http:// or https://).  ca: the PEM
        file of the CA (or the self-signed certificate) that authenticates an
        https server (None: the system's).  chunk: bytes per upload request
        (None: 64 MiB)."""
        ca = None if ca is None else _path(ca)
        self = cls._make(lambda lib: lib.bt_remote_create, _s(url, "url"), ca)
        if chunk is not None:
            self.set_chunk(chunk)
        return self

    @classmethod
    def open(cls, url, job_id, token, ca=None):
        """The existing job `job_id` whose token is `token` (nothing is sent)."""
        self = cls._make(lambda lib: lib.bt_remote_open, _s(url, "url"), _s(job_id, "job_id"), _s(token, "token"))
        if ca is not None:
            self._lib.check(self._lib.bt_remote_set_ca(self._ptr, _path(ca)))
        return self

    @classmethod
    def load(cls, path):
        """The job a job file names (Remote.save, `blindtuner remote submit`)."""
        return cls._make(lambda lib: lib.bt_remote_load, _path(path))

    def save(self, path):
        """The job file: server, id, token (and CA), written atomically with mode 0600."""
        with self._call():
            self._lib.check(self._lib.bt_remote_save(self._ptr, _path(path)))

    def set_chunk(self, nbytes):
        """Bytes per upload request, 4096 or more (0: the default, 64 MiB)."""
        with self._call():
            self._lib.check(self._lib.bt_remote_set_chunk(self._ptr, _int(nbytes, "chunk", 0)))

    def _release(self):
        if self._ptr:
            self._lib.bt_remote_free(self._ptr)  # wipes the token
        self._ptr = None

    def _call(self):
        self._check_open()
        return self._mutex

    def _describe(self):
        return "job %s on %s" % (self.id, self.server)

    @property
    def id(self):
        self._check_open()
        return self._lib.bt_remote_id(self._ptr).decode()

    @property
    def server(self):
        self._check_open()
        return self._lib.bt_remote_server(self._ptr).decode()

    @property
    def ca(self):
        self._check_open()
        v = self._lib.bt_remote_ca(self._ptr)
        return None if v is None else os.fsdecode(v)

    @property
    def http_status(self):
        """The HTTP status of the last request (0: no answer came)."""
        self._check_open()
        return int(self._lib.bt_remote_http_status(self._ptr))

    # ------------------------------------------------------------ status
    def status(self):
        """The job's status as the server gives it (a dict, docs/API.md):
        state, queue_position, uploads, options, epochs_done, waiting_epoch,
        progress, epochs, models, losses, infer, logits, error..."""
        with self._call():
            buf = c_void_p()
            self._lib.check(self._lib.bt_remote_status(self._ptr, None, byref(buf)))
            try:
                text = ctypes.string_at(buf)
            finally:
                self._lib.bt_free(buf)
        return json.loads(text.decode("utf-8"))

    def wait(self, until=("waiting",) + _FINAL, interval=1.0, timeout=None, progress=None):
        """Polls the status every `interval` seconds until its state is one of
        `until` and returns it; a job done or failed whose inference is still
        queued or running is waited for too.  `progress`(status) is called
        after each poll.  Raises TimeoutError after `timeout` seconds."""
        if isinstance(until, str):
            until = (until,)
        if not interval > 0:
            raise ValueError("interval must be positive")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.status()
            if progress is not None:
                progress(s)
            busy = s.get("infer", {}).get("state") in ("queued", "running")
            if s.get("state") in until and not (busy and s.get("state") in _FINAL):
                return s
            if deadline is not None and time.monotonic() + interval > deadline:
                raise TimeoutError("job %s still %s after %g s" % (self.id, s.get("state"), timeout))
            time.sleep(interval)

    # ------------------------------------------------------------ uploads
    def upload(self, name, source, progress=None):
        """Uploads the job's file `name` ("eval", "train", "val" or "test")
        and completes it.  source: a file (a path), or the object itself (an
        EvalBundle for "eval", an EncryptedDataset otherwise), written to a
        private temporary file first.  Resumes where the server is after a
        broken connection and skips a file the server has whole.
        progress(done, total) is called as bytes arrive; an exception it
        raises cancels the upload (the server keeps what it has) and is
        re-raised.  Returns {"size", "resumed_at", "skipped", "retries"}."""
        if name not in _FILES:
            raise ValueError("name: one of %s, got %r" % (", ".join(_FILES), name))
        if isinstance(source, (EvalBundle, EncryptedDataset)):
            want = EvalBundle if name == "eval" else EncryptedDataset
            if not isinstance(source, want):
                raise TypeError("%s: an %s expected, got %s" % (name, want.__name__, type(source).__name__))
            tmp = tempfile.mkdtemp(prefix="blindtuner-upload-")
            try:
                path = os.path.join(tmp, name + ".bt")
                source.save(path)
                return self._upload(name, path, progress)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return self._upload(name, _path(source), progress)

    def _upload(self, name, path, progress):
        cb = _UploadProgress(progress)
        res = L.RemoteUploadResult()
        with self._call():
            st = self._lib.bt_remote_upload(self._ptr, name.encode(), _path(path), cb.c, None, byref(res))
        if cb.exc is not None:
            raise cb.exc
        self._lib.check(st)
        return {"size": res.size, "resumed_at": res.resumed_at, "skipped": bool(res.skipped), "retries": res.retries}

    # ------------------------------------------------------------ training
    def start(self, epochs=None, lr=None, momentum=None, seed=None, accumulate=None):
        """Queues the training with these options (each None: the library's
        default, as `blindtuner train` has it: lr None is the large-batch
        rule, accumulate None one batch per update); returns the status."""
        o = L.JobOptions()
        self._lib.bt_job_options_init(byref(o))
        if epochs is not None:
            o.epochs = _int(epochs, "epochs", 1)
        if lr is not None:
            o.lr = float(lr)
        if momentum is not None:
            o.momentum = float(momentum)
        if seed is not None:
            o.seed = _int(seed, "seed", 0, 2 ** 64 - 1)
        if accumulate is not None:
            o.accumulate = _int(accumulate, "accumulate", 1, 64)
        with self._call():
            self._lib.check(self._lib.bt_remote_start(self._ptr, byref(o), None))
        return self.status()

    def answer(self, answer):
        """Posts the client's one-bit Answer (Client.decide) for its epoch;
        returns the status.  An answer the server has already is not an error."""
        if not isinstance(answer, Answer):
            raise TypeError("answer: an Answer (from Client.decide) expected, got %s" % type(answer).__name__)
        tmp = tempfile.mkdtemp(prefix="blindtuner-answer-")
        try:
            path = os.path.join(tmp, "answer.bt")
            answer.save(path)
            with self._call():
                self._lib.check(self._lib.bt_remote_answer(self._ptr, answer.epoch, _path(path), None))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.status()

    def infer(self, epoch):
        """Queues encrypted inference on the uploaded test set with the model
        of `epoch`; returns the status (wait() for infer.state done)."""
        with self._call():
            self._lib.check(self._lib.bt_remote_infer(self._ptr, _int(epoch, "epoch", 1), None))
        return self.status()

    def delete(self):
        """Deletes the job with its keys and data on the server, then closes
        this Remote."""
        with self._call():
            self._lib.check(self._lib.bt_remote_delete(self._ptr))
        self.close()

    # ------------------------------------------------------------ downloads
    def download(self, what, epoch, path):
        """Fetches `what` ("model", "loss" or "logits") of `epoch` into the
        file `path` (replaced atomically once its header has been checked)."""
        if what not in ("model", "loss", "logits"):
            raise ValueError("what: model, loss or logits, got %r" % (what,))
        with self._call():
            self._lib.check(self._lib.bt_remote_download(self._ptr, what.encode(), _int(epoch, "epoch", 1),
                                                         _path(path)))

    def _fetch(self, what, cls, epoch, ctx):
        ctx = _context(ctx, "Remote." + what)
        tmp = tempfile.mkdtemp(prefix="blindtuner-fetch-")
        try:
            path = os.path.join(tmp, what + ".bt")
            self.download(what, epoch, path)
            return cls.load(path, ctx)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def model(self, epoch, ctx):
        """The encrypted Model of `epoch`, checked against ctx (the Client, or
        an EvalBundle) as the client's own files are."""
        return self._fetch("model", Model, epoch, ctx)

    def loss(self, epoch, ctx):
        """The encrypted validation Loss of `epoch` (for Client.decide)."""
        return self._fetch("loss", Loss, epoch, ctx)

    def logits(self, epoch, ctx):
        """The encrypted Logits of the test set under the model of `epoch`."""
        return self._fetch("logits", Logits, epoch, ctx)
