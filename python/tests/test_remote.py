"""blindtuner.Remote against a real `blindtuner serve` on localhost.

The client runs the protocol over HTTP (uploads, start, one answer per
epoch, the model, inference); the service trains in child processes of its
own.  The ciphertexts it returns must be byte for byte those of an
in-process Job on the same bytes: the training is deterministic given the
evaluation bundle, the sets and the options.  Then the refusals a careless
user meets: a secret bundle, the wrong object, a wrong token, a cancelled
upload resumed.

Environment: BLINDTUNER_LIB (the library), BLINDTUNER_CLI (the command that
runs `serve`; else `blindtuner` next to the library, else skipped).
"""
import os
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import numpy as np

import blindtuner as bt
from bt_testlib import find_cli

PRESET = "INSECURE-boot-n12-dense"
DIM, CLASSES, BATCH = 12, 3, 32
NTRAIN, NVAL, NTEST = 40, 20, 30
EPOCHS, MOMENTUM, SEED, PATIENCE, ACCUMULATE = 2, 0.8, 7, 3, 2
THREADS = 2


def start_server(cli, data, log):
    """`blindtuner serve` on a free loopback port: (process, base URL)."""
    err = open(log, "w")
    proc = subprocess.Popen([cli, "serve", "--listen", "127.0.0.1:0", "--data", data, "--allow-insecure",
                             "--threads", str(THREADS)], stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        proc.wait()
        with open(log) as f:
            raise RuntimeError("serve did not start: %s %s" % (line.strip(), f.read().strip()))
    return proc, line.split("listening on ", 1)[1].split(",", 1)[0]


class RemoteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cli = find_cli()
        if cli is None:
            raise unittest.SkipTest("no blindtuner command to run serve (set BLINDTUNER_CLI)")
        try:
            bt.Remote.open("http://127.0.0.1:1", "a", "b").close()
        except bt.BlindTunerError as e:
            raise unittest.SkipTest(str(e))
        cls.tmp = tempfile.mkdtemp(prefix="blindtuner-remote-")
        cls.server, cls.url = start_server(cli, os.path.join(cls.tmp, "data"), os.path.join(cls.tmp, "serve.err"))
        rng = np.random.default_rng(31)
        centres = rng.normal(0, 1.5, (CLASSES, DIM))

        def blobs(n):
            y = rng.integers(0, CLASSES, n)
            return (centres[y] + rng.normal(0, 1.5, (n, DIM))).astype(np.float32), y

        (xtr, ytr), (xva, yva), (xte, _) = blobs(NTRAIN), blobs(NVAL), blobs(NTEST)
        cls.client, cls.keys = bt.Client.keygen(DIM, CLASSES, batch=BATCH, preset=PRESET, allow_insecure=True,
                                                threads=THREADS)
        cls.scaler = cls.client.fit_scaler(xtr)
        cls.train = cls.client.encrypt(xtr, ytr, cls.scaler, order=bt.row_order(SEED, NTRAIN))
        cls.val = cls.client.encrypt(xva, yva, cls.scaler, role="val")
        cls.test = cls.client.encrypt(xte, None, cls.scaler, role="test")

    @classmethod
    def tearDownClass(cls):
        server = getattr(cls, "server", None)
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
            server.stdout.close()
        for name in ("test", "val", "train", "scaler", "keys", "client"):
            obj = getattr(cls, name, None)
            if obj is not None:
                obj.close()
        if hasattr(cls, "tmp"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def local_run(self, epochs):
        """The same protocol in this process: model bytes per epoch, the logits of the best."""
        stop = bt.EarlyStopping(epochs, PATIENCE)
        models = {}
        # the large-batch rule's rate (lr None) and two batches an update, as the service is asked below
        with bt.Job(self.keys, self.train, self.val, epochs=epochs, lr=None, momentum=MOMENTUM, seed=SEED,
                    accumulate=ACCUMULATE) as job:
            while job.state != "done":
                job.run_epoch()
                models[job.epochs_done] = job.model().to_bytes()
                if job.state == "wait":
                    job.answer(self.client.decide(stop, job.loss()))
            best = stop.best_epoch
            with bt.Model.from_bytes(models[best], self.keys) as m:
                logits = job.infer(m, self.test).to_bytes()
        return models, best, logits

    def test_protocol_over_http(self):
        ticks = []
        with bt.Remote.create(self.url) as r:
            self.assertEqual(r.status()["state"], "created")
            res = r.upload("eval", self.keys, progress=lambda d, t: ticks.append((d, t)))
            self.assertFalse(res["skipped"])
            self.assertGreater(res["size"], 0)
            self.assertEqual(ticks[-1], (res["size"], res["size"]))
            self.assertTrue(r.upload("eval", self.keys)["skipped"], "a whole file was sent again")
            r.upload("train", self.train)
            r.upload("val", self.val)
            path = os.path.join(self.tmp, "test.bt")
            self.test.save(path)
            self.assertEqual(r.upload("test", path)["size"], os.path.getsize(path))

            jobfile = os.path.join(self.tmp, "job.json")
            r.save(jobfile)
            self.assertEqual(stat.S_IMODE(os.stat(jobfile).st_mode), 0o600)
            with bt.Remote.load(jobfile) as again:
                self.assertEqual((again.id, again.server), (r.id, r.server))

            s = r.start(epochs=EPOCHS, momentum=MOMENTUM, seed=SEED, accumulate=ACCUMULATE)
            self.assertIn(s["state"], ("queued", "training", "waiting"))
            self.assertEqual(s["options"]["epochs"], EPOCHS)
            self.assertEqual(s["options"]["accumulate"], ACCUMULATE)
            self.assertEqual(s["options"]["lr"], 0)  # the rule
            stop, answered = bt.EarlyStopping(EPOCHS, PATIENCE), []
            while True:
                s = r.wait(interval=0.2, timeout=600)
                if s["state"] != "waiting":
                    break
                e = s["waiting_epoch"]
                with r.loss(e, self.client) as loss:
                    self.assertEqual(loss.epoch, e)
                    a = self.client.decide(stop, loss)
                answered.append(e)
                r.answer(a)
                r.answer(a)  # again, as after a lost reply: harmless
            self.assertEqual(s["state"], "done", s.get("error"))
            self.assertEqual(answered, list(range(1, len(answered) + 1)))

            models, best, logits = self.local_run(EPOCHS)
            self.assertEqual(stop.best_epoch, best)
            self.assertEqual(s["models"], sorted(models))
            for e, want in models.items():
                with r.model(e, self.client) as m:
                    self.assertEqual(m.to_bytes(), want, "the model of epoch %d differs from the in-process Job's" % e)

            s = r.infer(best)
            self.assertIn(s["infer"]["state"], ("queued", "running", "done"))
            s = r.wait(until="done", interval=0.2, timeout=600)
            self.assertEqual(s["infer"]["state"], "done", s.get("error"))
            with r.logits(best, self.client) as z:
                self.assertEqual(z.rows, NTEST)
                self.assertEqual(z.to_bytes(), logits)
            out = os.path.join(self.tmp, "model.bt")
            r.download("model", best, out)
            self.assertEqual(bt.Model.load(out, self.client).to_bytes(), models[best])

            r.delete()
            self.assertTrue(r.closed)
        with bt.Remote.load(jobfile) as gone:
            with self.assertRaises(bt.BlindTunerError):
                gone.status()
            self.assertIn(gone.http_status, (401, 404))

    def test_refusals(self):
        secret = os.path.join(self.tmp, "client.key")
        self.client.save(secret)
        with bt.Remote.create(self.url) as r:
            with self.assertRaisesRegex(bt.BlindTunerError, "secret"):
                r.upload("eval", secret)
            self.assertEqual(r.status()["uploads"]["eval"]["received"], 0, "a byte of the secret bundle was sent")
            with self.assertRaises(TypeError):
                r.upload("train", self.keys)
            with self.assertRaises(ValueError):
                r.upload("weights", self.train)
            with self.assertRaises(TypeError):
                r.answer(b"continue")
            with self.assertRaises(bt.BlindTunerError):
                r.download("model", 1, os.path.join(self.tmp, "none.bt"))
            self.assertIn(r.http_status, (404, 409))

            # a cancelled upload (Ctrl-C in the progress callback) resumes where the server is
            r.upload("eval", self.keys)  # the sets are checked against it
            r.set_chunk(4096)
            path = os.path.join(self.tmp, "val.bt")
            self.val.save(path)

            def cancel(done, total):
                if done > 0:
                    raise KeyboardInterrupt

            with self.assertRaises(KeyboardInterrupt):
                r.upload("val", path, progress=cancel)
            got = r.status()["uploads"]["val"]
            self.assertTrue(0 < got["received"] < os.path.getsize(path) and not got["complete"], got)
            res = r.upload("val", path)
            self.assertEqual(res["resumed_at"], got["received"])
            self.assertTrue(r.status()["uploads"]["val"]["complete"])

            with bt.Remote.open(self.url, r.id, "0" * 64) as wrong:
                with self.assertRaises(bt.BlindTunerError) as cm:
                    wrong.status()
                self.assertIn(wrong.http_status, (401, 404))
                self.assertNotIn("0" * 64, str(cm.exception))
            with self.assertRaises(bt.BlindTunerError):
                bt.Remote.open(self.url, "../etc", "x")
            r.delete()
        with self.assertRaises(ValueError):
            r.status()
        with self.assertRaises(bt.BlindTunerError):
            bt.Remote.create("ftp://127.0.0.1/")
        t0 = time.monotonic()
        with self.assertRaises(bt.BlindTunerError):
            bt.Remote.create("http://127.0.0.1:1")  # nothing listens there
        self.assertLess(time.monotonic() - t0, 30)


if __name__ == "__main__":
    unittest.main()
