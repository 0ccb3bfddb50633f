"""Training machinery of :mod:`recon` (re-exported by :mod:`recon.train`).

Modules: :mod:`.config` (TrainConfig), :mod:`.trainer` (Trainer, FitResult), :mod:`.checkpoint`
(weights-only checkpoints, load_weights), :mod:`.atomic` (temporary file + ``os.replace``),
:mod:`.rng` (seeding, RNG states as tensors), :mod:`.batches` (batch checks, loaders),
:mod:`.evaluation` (sharded loss / metrics), :mod:`.distributed` (torchrun / DDP set-up,
run_distributed), :mod:`.logs` (CSV / JSON / TensorBoard), :mod:`.seeds` (train_seeds,
summarize_seeds).
"""

from .checkpoint import load_checkpoint, load_weights, save_atomic
from .config import TrainConfig
from .distributed import DistInfo, dist_info, init_distributed, run_distributed
from .rng import capture_rng, restore_rng, seed_everything
from .seeds import SeedRun, summarize_seeds, train_seeds
from .trainer import CHECKPOINT_FORMAT, FitResult, Trainer

__all__ = [
    "TrainConfig", "Trainer", "FitResult", "CHECKPOINT_FORMAT", "seed_everything",
    "load_weights", "load_checkpoint", "save_atomic", "capture_rng", "restore_rng",
    "DistInfo", "dist_info", "init_distributed", "run_distributed",
    "SeedRun", "train_seeds", "summarize_seeds",
]
