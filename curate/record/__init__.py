"""Recording the training dynamics of any training loop: the prediction log `curate train` writes,
from the user's own evaluation pass (`recorder.Recorder`), from arrays saved by a run that already
happened (`importlog`), or from a PyTorch Lightning / Hugging Face callback (`lightning`, `hf`,
imported only when used). `curate import-log` is registered by `curate.commands.record`."""


def __getattr__(name: str):
    if name in ("Recorder", "RecordedRun"):
        from curate.record import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'curate.record' has no attribute {name!r}")
