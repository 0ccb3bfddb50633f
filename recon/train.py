"""Training of reconstruction networks: the public entry point (see :mod:`recon.training`).

Adam with cosine decay, gradient clipping, validation after each epoch and early stopping,
atomic weights-only checkpoints resumable after a kill, CSV/JSON/TensorBoard logs, tqdm progress,
several seeds summarised as mean and std, and scale-out through ``torchrun`` /
DistributedDataParallel with the same code path for one CPU, one GPU or several processes.

Example
-------
>>> from recon.train import Trainer, TrainConfig, load_weights
>>> cfg = TrainConfig(epochs=20, batch_size=8, lr=1e-3, patience=5, seed=0)
>>> trainer = Trainer(model, None, train_set, val_set, cfg, "runs/lpd")  # doctest: +SKIP
>>> result = trainer.fit()        # resumes from runs/lpd/checkpoint.pt if there  # doctest: +SKIP
>>> test = trainer.evaluate(test_set, metrics_fn)   # once, at the end         # doctest: +SKIP

Multi-process: ``torchrun --nproc_per_node=4 script.py`` runs the same script; each process
builds the same model and datasets and calls ``fit()``.
"""

from .training import *  # noqa: F401,F403
from .training import __all__  # noqa: F401
