"""The Python package end to end on a tiny INSECURE key set.

The client and the server are separate objects that share nothing but bytes
(to_bytes/from_bytes, exactly the containers the command line writes as
files): the server's Job gets the evaluation bundle and the encrypted sets,
the client gets back models and losses and sends one bit per epoch.  The same
run through the `blindtuner` command (BLINDTUNER_CLI) must then decrypt to
bit-identical weights: BT_INSECURE_TEST_SEED fixes the client's randomness
(keys, encryption noise) for INSECURE parameters, and both sides take the
training rows in bt_pipeline_row_order(seed, n).

Environment: BLINDTUNER_LIB (the library), BLINDTUNER_CLI (the command; else
`blindtuner` next to the library, else the CLI test is skipped).
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import blindtuner as bt
from bt_testlib import find_cli

PRESET = "INSECURE-boot-n12-dense"
TEST_SEED = "python-pipeline-test"
DIM, CLASSES, BATCH = 12, 3, 32
NTRAIN, NVAL, NTEST = 48, 24, 40  # 2 training batches (the second partial), 1 validation, 2 test
EPOCHS, LR, MOMENTUM, SEED, PATIENCE = 2, 0.4, 0.8, 5, 3
THREADS = 2


def blobs(rng, centres, n):
    y = rng.integers(0, CLASSES, n)
    return (centres[y] + rng.normal(0, 1.5, (n, DIM))).astype(np.float32), y.astype(np.int64)


def interrupt(what, done, total):
    raise KeyboardInterrupt  # what Ctrl-C raises in the callback


def read(path):
    with open(path, "rb") as f:
        return f.read()


class PipelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.old_seed = os.environ.get("BT_INSECURE_TEST_SEED")
        os.environ["BT_INSECURE_TEST_SEED"] = TEST_SEED  # read by the library at keygen and open
        cls.tmp = tempfile.mkdtemp(prefix="blindtuner-py-")
        rng = np.random.default_rng(2027)
        centres = rng.normal(0, 1.5, (CLASSES, DIM))
        cls.xtr, cls.ytr = blobs(rng, centres, NTRAIN)
        cls.xva, cls.yva = blobs(rng, centres, NVAL)
        cls.xte, cls.yte = blobs(rng, centres, NTEST)
        cls.run_python()

    @classmethod
    def tearDownClass(cls):
        for name in ("client", "scaler", "keys"):
            obj = getattr(cls, name, None)
            if obj is not None:
                obj.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if cls.old_seed is None:
            os.environ.pop("BT_INSECURE_TEST_SEED", None)
        else:
            os.environ["BT_INSECURE_TEST_SEED"] = cls.old_seed

    @classmethod
    def run_python(cls):
        """The protocol with nothing but bytes between client and server."""
        # ---- client: keys, standardisation, encryption
        client, bundle = bt.Client.keygen(DIM, CLASSES, batch=BATCH, preset=PRESET, allow_insecure=True,
                                          threads=THREADS)
        scaler = client.fit_scaler(cls.xtr)
        wire = {"keys": bundle.to_bytes()}
        bundle.close()
        ticks = []
        order = bt.row_order(SEED, NTRAIN)
        wire["train"] = client.encrypt(cls.xtr, cls.ytr, scaler, "train", order=order,
                                       progress=lambda *a: ticks.append(a)).to_bytes()
        wire["val"] = client.encrypt(cls.xva, cls.yva, scaler, role="val").to_bytes()
        wire["test"] = client.encrypt(cls.xte, None, scaler, role="test").to_bytes()
        cls.encrypt_ticks = ticks

        # ---- server: the evaluation bundle and ciphertexts only
        keys = bt.EvalBundle.from_bytes(wire["keys"], allow_insecure=True, threads=THREADS)
        train = bt.EncryptedDataset.from_bytes(wire["train"], keys)
        val = bt.EncryptedDataset.from_bytes(wire["val"], keys)
        job = bt.Job(keys, train, val, epochs=EPOCHS, lr=LR, momentum=MOMENTUM, seed=SEED)
        cls.states = [job.state]
        stop = bt.EarlyStopping(EPOCHS, PATIENCE)
        cls.models, cls.model_bytes, cls.answer_bytes = {}, {}, {}
        cls.reports, cls.answers, cls.steps = [], [], []
        cls.after_cancel = None
        while job.state != "done":
            if job.epochs_done == 1 and cls.after_cancel is None:
                # Ctrl-C after the first step of epoch 2: the job must go back to the end of epoch 1
                # (the rest of the run, compared bit for bit with the command line, continues from there)
                try:
                    job.run_epoch(progress=interrupt)
                except KeyboardInterrupt:
                    cls.after_cancel = (job.state, job.epochs_done, job.model().to_bytes())
                else:
                    raise AssertionError("the interrupted epoch ran to its end")
            cls.reports.append(job.run_epoch(progress=lambda *a: cls.steps.append(a)))
            cls.states.append(job.state)
            model_b, loss_b = job.model().to_bytes(), job.loss().to_bytes()
            if job.epochs_done == 1:
                cls.checkpoint = job.checkpoint_bytes()
                job.save_checkpoint(os.path.join(cls.tmp, "checkpoint.bt"))
            # client: reads the loss, keeps it, sends one bit
            model = bt.Model.from_bytes(model_b, client)
            cls.models[model.epoch] = model
            cls.model_bytes[model.epoch] = model_b
            answer = client.decide(stop, bt.Loss.from_bytes(loss_b, client))
            cls.answers.append((answer.epoch, answer.go_on))
            cls.answer_bytes[answer.epoch] = answer.to_bytes()
            # server
            job.answer(bt.Answer.from_bytes(cls.answer_bytes[answer.epoch], keys))
            cls.states.append(job.state)
        cls.heads = {e: client.decrypt_model(m, scaler) for e, m in cls.models.items()}
        cls.client, cls.scaler, cls.stop, cls.wire = client, scaler, stop, wire
        cls.keys, cls.job, cls.train, cls.val = keys, job, train, val

    # ------------------------------------------------------------ the Python run
    def test_protocol(self):
        self.assertEqual(self.states, ["train", "wait", "train", "done", "done"])
        self.assertEqual(self.job.epochs_done, EPOCHS)
        self.assertEqual([r["epoch"] for r in self.reports], [1, 2])
        self.assertEqual([r["steps"] for r in self.reports], [2, 2])
        self.assertGreater(self.reports[0]["stats"]["bootstraps"], 0)
        self.assertEqual([s for s in self.steps if s[0] == "step"], [("step", 1, 2), ("step", 2, 2)] * 2)
        self.assertIn(("validation batch", 1, 1), self.steps)
        self.assertEqual(self.encrypt_ticks, [("batch", 1, 2), ("batch", 2, 2)])
        # the last of the agreed epochs is answered stop: no loss beyond it will be decrypted
        self.assertEqual(self.answers, [(1, True), (2, False)])
        self.assertTrue(self.stop.stopped)
        self.assertEqual(self.stop.max_epochs, EPOCHS)
        self.assertEqual(len(self.stop.losses), EPOCHS)
        self.assertIn(self.stop.best_epoch, (1, 2))
        self.assertEqual(self.stop.best_loss, min(self.stop.losses))
        self.assertEqual((self.train.rows, self.train.batches, self.train.role), (NTRAIN, 2, "train"))
        self.assertEqual((self.val.rows, self.val.batches, self.val.role), (NVAL, 1, "val"))
        self.assertEqual(self.keys.tag, self.client.tag)

    def test_decrypted_model(self):
        for e, h in self.heads.items():
            self.assertEqual(h.epoch, e)
            self.assertEqual(h.weights.shape, (CLASSES, DIM + 1))
            np.testing.assert_allclose(h.mean, self.xtr.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-6)
            self.assertTrue(np.all(h.sd > 0))
        head = self.heads[self.stop.best_epoch]
        acc, loss = head.evaluate(self.xte, self.yte)
        self.assertGreaterEqual(acc, 0.7)  # well-separated blobs
        self.assertTrue(np.isfinite(loss))
        labels, prob = head.predict(self.xte)
        self.assertEqual(labels.dtype, np.int64)
        self.assertEqual(prob.shape, (NTEST, CLASSES))
        np.testing.assert_allclose(prob.sum(axis=1), 1, atol=1e-5)
        self.assertAlmostEqual(float(np.mean(labels == self.yte)), acc)
        # the validation loss the client decrypted is the head's cross-entropy on the validation rows
        # (through the softmax approximation: close, not equal)
        _, val_loss = self.heads[1].evaluate(self.xva, self.yva)
        self.assertLess(abs(val_loss - self.stop.losses[0]), 0.05)

    def test_round_trips(self):
        head = self.heads[self.stop.best_epoch]
        path = os.path.join(self.tmp, "head.bt")
        head.save(path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        for h in (bt.load_head(path), bt.Head.from_bytes(head.to_bytes()), bt.Head.from_bytes(read(path))):
            with h:
                np.testing.assert_array_equal(h.weights, head.weights)
                np.testing.assert_array_equal(h.sd, head.sd)
                self.assertEqual(h.epoch, head.epoch)
        self.assertTrue(h.closed)
        # the scaler, checked against the key set
        path = os.path.join(self.tmp, "scaler.bt")
        self.scaler.save(path)
        with bt.Scaler.load(path, self.client) as s:
            np.testing.assert_array_equal(s.mean, self.scaler.mean)
            self.assertTrue(s.whitened)
            np.testing.assert_array_equal(s.projection, self.scaler.projection)
        # the secret bundle: a second client decrypts the same value
        loss = bt.Loss.from_bytes(self.job.loss().to_bytes(), self.client)
        with bt.Client.from_bytes(self.client.to_bytes(), allow_insecure=True) as c2:
            self.assertEqual(c2.tag, self.client.tag)
            self.assertEqual(c2.decrypt_loss(bt.Loss.from_bytes(loss.to_bytes(), c2)), self.stop.losses[-1])
        # files and buffers are the same containers
        path = os.path.join(self.tmp, "model.bt")
        self.models[1].save(path)
        self.assertEqual(read(path), self.model_bytes[1])
        with bt.Model.load(path, self.keys) as m:
            self.assertEqual(m.epoch, 1)


    def test_whitening(self):
        # the default scaler whitens: the training rows' covariance after it is the identity (up to the ridge)
        self.assertTrue(self.scaler.whitened)
        p = self.scaler.projection
        self.assertEqual(p.shape, (DIM, DIM))
        s = (self.xtr.astype(np.float64) - self.scaler.mean) / self.scaler.sd
        u = s @ p.T
        np.testing.assert_allclose(u.T @ u / len(u), np.eye(DIM), atol=0.05)
        with self.client.fit_scaler(self.xtr, whiten=False) as plain:
            self.assertFalse(plain.whitened)
            self.assertIsNone(plain.projection)
            np.testing.assert_array_equal(plain.mean, self.scaler.mean)
        with self.client.fit_scaler(self.xtr, ridge=1.0) as strong:  # a strong ridge shrinks every direction
            self.assertLess(np.abs(strong.projection).max(), np.abs(p).max())
        with self.assertRaises(ValueError):
            self.client.fit_scaler(self.xtr, whiten=False, ridge=1e-3)
        # the decrypted model has the projection folded in: its logits on raw rows are W [u; 1]
        head = self.heads[self.stop.best_epoch]
        ute = np.hstack([((self.xte.astype(np.float64) - self.scaler.mean) / self.scaler.sd) @ p.T,
                         np.ones((NTEST, 1))])
        w_server = np.hstack([head.weights[:, :DIM] @ np.linalg.inv(p), head.weights[:, DIM:]])
        np.testing.assert_allclose(head.logits(self.xte), ute @ w_server.T, rtol=1e-6, atol=1e-6)

    def test_checkpoint(self):
        with bt.Job(self.keys, self.train, self.val, epochs=EPOCHS, lr=LR, momentum=MOMENTUM, seed=SEED) as job:
            self.assertEqual((job.state, job.epochs_done), ("train", 0))
            job.restore(self.checkpoint)
            self.assertEqual((job.state, job.epochs_done), ("wait", 1))  # asks for the answer again
            self.assertEqual(job.model().to_bytes(), self.model_bytes[1])
        with bt.Job(self.keys, self.train, self.val, epochs=EPOCHS, lr=LR, momentum=MOMENTUM, seed=SEED) as job:
            job.restore(os.path.join(self.tmp, "checkpoint.bt"))
            self.assertEqual(job.epochs_done, 1)
            with self.assertRaises(bt.BlindTunerError):
                job.run_epoch()  # waiting for the answer
        with bt.Job(self.keys, self.train, self.val, epochs=EPOCHS, lr=LR / 2, momentum=MOMENTUM, seed=SEED) as job:
            with self.assertRaises(bt.BlindTunerError) as cm:
                job.restore(self.checkpoint)
            self.assertIn("learning rate", cm.exception.message)

    def test_cancelled_epoch_rolls_back(self):
        self.assertEqual(self.after_cancel, ("train", 1, self.model_bytes[1]))

    def test_inference(self):
        test = bt.EncryptedDataset.from_bytes(self.wire["test"], self.keys)
        self.assertFalse(test.labelled)
        e = self.stop.best_epoch
        logits = self.job.infer(bt.Model.from_bytes(self.model_bytes[e], self.keys), test)
        self.assertEqual(logits.rows, NTEST)
        z = self.client.decrypt_logits(bt.Logits.from_bytes(logits.to_bytes(), self.client))
        self.assertEqual((z.shape, z.dtype), ((NTEST, CLASSES), np.float32))
        np.testing.assert_allclose(z, self.heads[e].logits(self.xte), atol=1e-2)

    # ------------------------------------------------------------ errors
    def test_argument_errors(self):
        c, s = self.client, self.scaler
        with self.assertRaises(TypeError):
            c.fit_scaler(self.xtr.astype(np.float64))
        with self.assertRaises(TypeError):
            c.fit_scaler(self.xtr.tolist())
        with self.assertRaises(ValueError):
            c.fit_scaler(self.xtr[:, :DIM - 1])
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr.ravel(), self.ytr, s)
        with self.assertRaises(TypeError):
            c.encrypt(self.xtr, self.ytr.astype(np.float32), s)
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr, self.ytr[:-1], s)
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr, self.ytr + CLASSES, s)
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr, None, s, role="train")
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr, self.ytr, s, role="validation")
        with self.assertRaises(ValueError):
            c.encrypt(self.xtr, self.ytr, s, order=np.arange(1, NTRAIN + 1))
        with self.assertRaises(TypeError):
            c.encrypt(self.xtr, self.ytr, self.heads[1])  # a Head is not a Scaler
        bad = self.xtr.copy()
        bad[0, 0] = np.nan
        with self.assertRaises(ValueError):
            c.fit_scaler(bad)
        with self.assertRaises(ValueError):
            self.heads[1].evaluate(self.xte, self.yte[:5])
        with self.assertRaises(TypeError):
            bt.Job(self.client, self.train)
        with self.assertRaises(ValueError):
            bt.Job(self.keys, self.train, lr=0)
        with self.assertRaises(ValueError):
            bt.Job(self.keys, self.train, accumulate=65)
        with self.assertRaises(ValueError):
            bt.Job(self.keys, self.train, softmax_range=300)
        # a wider softmax range: a job like any other
        with bt.Job(self.keys, self.train, softmax_range=128) as job:
            self.assertEqual(job.lr, 0.3)
        # the mirrored options struct reaches C whole: a range past Python's
        # check, set on the struct itself, is refused by the library by value
        from ctypes import byref, c_void_p
        from blindtuner import _lib as L
        lib = self.keys._lib
        o = L.JobOptions()
        lib.bt_job_options_init(byref(o))
        self.assertEqual(o.accumulate, 1)
        o.softmax_bound = 300.0
        ptr = c_void_p()
        with self.assertRaisesRegex(bt.BlindTunerError, "softmax range 300"):
            lib.check(lib.bt_job_new(self.keys._params(), self.keys._buf, self.train._buf, None, byref(o), byref(ptr)))
        # lr None: the large-batch rule, 0.3 for a step of BATCH <= 1,024 rows
        with bt.Job(self.keys, self.train, accumulate=2) as job:
            self.assertEqual(job.lr, 0.3)
        with bt.Job(self.keys, self.train, lr=0.25) as job:
            self.assertEqual(job.lr, 0.25)
        # the server's objects are not the client's: they cross as bytes
        with self.assertRaises(ValueError):
            c.decrypt_model(self.job.model(), s)
        with self.assertRaises(ValueError):
            bt.Job(self.keys, bt.EncryptedDataset.from_bytes(self.wire["train"], c))

    def test_library_errors(self):
        with self.assertRaises(bt.BlindTunerError) as cm:
            bt.Client.keygen(DIM, CLASSES, batch=BATCH, preset=PRESET)  # INSECURE without allow_insecure
        e = cm.exception
        self.assertEqual(e.status_name, "BT_E_INSECURE")
        self.assertLess(e.status, 0)
        self.assertIn("INSECURE", e.message)
        self.assertIn("BT_E_INSECURE", str(e))
        with self.assertRaises(bt.BlindTunerError) as cm:
            bt.Client.keygen(DIM, CLASSES, preset="no-such-preset")
        self.assertTrue(cm.exception.message)
        with self.assertRaises(bt.BlindTunerError) as cm:
            bt.EncryptedDataset.from_bytes(b"not a container at all", self.keys)
        self.assertEqual(cm.exception.status_name, "BT_E_FORMAT")
        corrupted = bytearray(self.wire["val"])
        corrupted[-40] ^= 1
        with self.assertRaises(bt.BlindTunerError):
            bt.EncryptedDataset.from_bytes(corrupted, self.keys)
        with self.assertRaises(bt.BlindTunerError):  # a dataset where a model is expected
            bt.Model.from_bytes(self.wire["val"], self.keys)
        with self.assertRaises(bt.BlindTunerError):
            bt.load_head(os.path.join(self.tmp, "missing.bt"))
        with self.assertRaises(bt.BlindTunerError):
            self.job.run_epoch()  # done
        with self.assertRaises(bt.BlindTunerError):
            bt.EvalBundle.from_bytes(self.wire["keys"])  # INSECURE parameters inside

    def test_progress_exception_cancels(self):
        def boom(what, done, total):
            raise RuntimeError("stop here")

        with self.assertRaisesRegex(RuntimeError, "stop here"):
            self.client.encrypt(self.xva, self.yva, self.scaler, role="val", progress=boom)
        with self.assertRaises(TypeError):
            self.client.encrypt(self.xva, self.yva, self.scaler, role="val", progress=3)
        # the client is still usable
        with self.client.encrypt(self.xva[:4], self.yva[:4], self.scaler, role="val") as d:
            self.assertEqual(d.rows, 4)
        self.assertTrue(d.closed)
        with self.assertRaises(ValueError):
            d.to_bytes()

    def test_close_order(self):
        c, bundle = bt.Client.keygen(4, 2, batch=8, preset="INSECURE-n10", allow_insecure=True, threads=1)
        sc = c.fit_scaler(self.xtr[:, :4].copy())
        d = c.encrypt(self.xtr[:, :4].copy(), self.ytr % 2, sc)
        c.close()  # closes what refers to its parameters first
        self.assertTrue(bundle.closed and d.closed)
        with self.assertRaises(ValueError):
            d.rows
        self.assertEqual(sc.dim, 4)  # a scaler needs no parameters

    # ------------------------------------------------------------ the same through the command line
    def test_cli_identity(self):
        cli = find_cli()
        if not cli:
            self.skipTest("no blindtuner command (set BLINDTUNER_CLI)")
        d = os.path.join(self.tmp, "cli")
        os.makedirs(d)
        for name, x, y in (("train", self.xtr, self.ytr), ("val", self.xva, self.yva)):
            np.save(os.path.join(d, name + ".features.npy"), x)
            np.save(os.path.join(d, name + ".labels.npy"), y.astype(np.int64))

        def run(*args, rc=0):
            p = subprocess.run([cli] + [str(a) for a in args], cwd=d, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
            self.assertEqual(p.returncode, rc, "blindtuner %s: exit %d\n%s%s" % (" ".join(map(str, args)),
                                                                              p.returncode, p.stdout, p.stderr))
            return p.stdout

        th = ("--threads", THREADS)
        ins = "--allow-insecure"
        run("keygen", "--preset", PRESET, "--allow-insecure", "--dim", DIM, "--classes", CLASSES, "--batch", BATCH,
            "--secret", "client.key", "--eval", "server.keys", *th)
        # keygen writes each key as it makes it (bt_client_keygen_save); the bundle is the in-memory one, byte for byte
        self.assertEqual(read(os.path.join(d, "server.keys")), self.wire["keys"])
        run("encrypt", ins, "--keys", "client.key", "--role", "train", "--features", "train.features.npy", "--labels",
            "train.labels.npy", "--scaler", "scaler.bt", "--out", "train.bt", "--seed", SEED, *th)
        run("encrypt", ins, "--keys", "client.key", "--role", "val", "--features", "val.features.npy", "--labels",
            "val.labels.npy", "--scaler", "scaler.bt", "--out", "val.bt", *th)
        train = ("train", ins, "--keys", "server.keys", "--train", "train.bt", "--val", "val.bt", "--workdir", "work",
                 "--epochs", EPOCHS, "--lr", LR, "--momentum", MOMENTUM, "--seed", SEED) + th
        run(*train, rc=3)  # waits for the answer to epoch 1
        run("decide", ins, "--keys", "client.key", "--workdir", "work", "--patience", PATIENCE, "--epochs", EPOCHS)
        run(*train)
        decided = json.loads(run("decide", ins, "--keys", "client.key", "--workdir", "work", "--patience", PATIENCE,
                                 "--json"))
        self.assertEqual(decided["best_epoch"], self.stop.best_epoch)
        np.testing.assert_array_equal([e["val_loss"] for e in decided["epochs"]], self.stop.losses)
        # the same containers, byte for byte
        for name in ("train", "val"):
            self.assertEqual(read(os.path.join(d, name + ".bt")), self.wire[name], name + ".bt")
        for e in range(1, EPOCHS + 1):
            model = os.path.join("work", "model-%03d.bt" % e)
            self.assertEqual(read(os.path.join(d, model)), self.model_bytes[e], model)
            run("decrypt", ins, "--keys", "client.key", "--model", model, "--scaler", "scaler.bt", "--out",
                "head-%d.bt" % e)
            with bt.load_head(os.path.join(d, "head-%d.bt" % e)) as h:
                self.assertEqual(h.epoch, e)
                np.testing.assert_array_equal(h.weights, self.heads[e].weights)  # bit for bit
                np.testing.assert_array_equal(h.mean, self.heads[e].mean)
                np.testing.assert_array_equal(h.sd, self.heads[e].sd)


if __name__ == "__main__":
    unittest.main()
