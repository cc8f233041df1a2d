"""Recording the training dynamics of any training loop: the prediction log `curate train` writes,
from the user's own evaluation pass (`recorder.Recorder`), from arrays saved by a run that already
happened (`importlog`), or from a PyTorch Lightning / Hugging Face callback (`lightning`, `hf`,
imported only when used). `curate import-log` is registered by `curate.commands.record`; the log
itself (its layout, manifest and catalog rows) is `curate.runlog`'s."""

# the file names `curate import-log` reads (`importlog`), for its messages and its --help
SCHEME = (
    "<split>_m<member>_e<epoch>.npy|.npz|.pt of shape (N, C), or <split>.npy|.npz|.pt of shape "
    "(M, E+1, N, C), with an optional <split>_idx.npy"
)


def __getattr__(name: str):
    if name in ("Recorder", "RecordedRun"):
        from curate.record import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'curate.record' has no attribute {name!r}")
