"""Training: the loop and what keeps a run safe, the optimizer, batches, checkpoints.

Reading order: loop.py (`train_step`, then `train`), optim.py (AdamW, clipping,
schedules), batching.py, checkpoint.py; then the run's bookkeeping: run_dir.py
(the run directory's lock), distributed.py (data parallelism), lengths.py (max_len
from the data), config.py (TrainConfig and the presets).
"""
