"""BlindTuner from Python: private fine-tuning of a softmax head on CKKS-encrypted
features, over libblindtuner.so (ctypes; numpy is the only other dependency).

The whole protocol, client and server in one process (x_*: float32 features,
one row per image; y_*: integer labels)::

    import blindtuner as bt

    client, keys = bt.Client.keygen(dim=x_train.shape[1], classes=5)  # client: secret key; keys for the server
    scaler = client.fit_scaler(x_train)
    train = client.encrypt(x_train, y_train, scaler, order=bt.row_order(1, len(x_train)))
    val = client.encrypt(x_val, y_val, scaler, role="val")
    job, stop, models = bt.Job(keys, train, val, epochs=2), bt.EarlyStopping(epochs=2, patience=3), {}
    while job.state != "done":                              # server: keys and ciphertexts only
        job.run_epoch()
        models[job.epochs_done] = job.model()
        job.answer(client.decide(stop, job.loss()))         # client: one bit back per epoch
    head = client.decrypt_model(models[stop.best_epoch], scaler)
    print(head.evaluate(x_test, y_test))                    # (accuracy, cross-entropy)

Everything that crosses between the roles (EvalBundle, EncryptedDataset,
Model, Loss, Answer, Logits) has to_bytes()/from_bytes() and save()/load(),
byte for byte the files of the `blindtuner` command.  Remote is the same
protocol against a training service (`blindtuner serve`) over HTTP.  Library failures raise
BlindTunerError (message, status, status_name); bad arguments caught in Python
raise TypeError or ValueError.  docs/PYTHON.md has the details.

The library: $BLINDTUNER_LIB, else build/libblindtuner.so of the repository
this package sits in (python/blindtuner -> ../../build), else the system's
(ctypes.util.find_library("blindtuner")).
"""
from ._lib import BlindTunerError, library_path, lib as _load
from ._containers import EncryptedDataset, EvalBundle, Logits, Loss, Model
from ._client import Answer, Client, EarlyStopping, Head, Scaler, load_head, row_order
from ._server import Job, batch_order
from ._remote import Remote

__all__ = ["BlindTunerError", "Client", "EvalBundle", "EncryptedDataset", "Model", "Loss", "Logits", "Answer",
           "EarlyStopping", "Scaler", "Head", "Job", "Remote", "row_order", "batch_order", "load_head", "library_path"]
__version__ = "0.6.0"

_load()  # finds the library, checks the mirrored structs, calls bt_init()
