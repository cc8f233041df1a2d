"""Recording the training dynamics of any training loop: the prediction log `curate train` writes,
from the user's own evaluation pass (`Recorder`), from arrays saved by a run that already happened
(`importlog`), or from a PyTorch Lightning / Hugging Face callback (`lightning`, `hf`, imported
only when used)."""

from curate.record.recorder import RecordedRun, Recorder

__all__ = ["Recorder", "RecordedRun"]
