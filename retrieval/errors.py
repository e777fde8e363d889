"""Exceptions with messages a user can act on; the CLI prints them as one line (exit 1)."""


class RetrieveError(Exception):
    """Base class: a problem with the user's input or files, not a bug."""


class NotAnImage(RetrieveError):
    """A file that cannot be decoded as an image (empty, truncated, not an image, too large)."""

    def __init__(self, path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class WeightsError(RetrieveError):
    """A weights argument that names no usable checkpoint or pretrained weights."""


class IndexMismatch(RetrieveError):
    """An index built with other weights, layer or factory than the ones asked for."""


class IndexCorrupt(RetrieveError):
    """A damaged or missing file inside an index directory."""


class DataError(RetrieveError):
    """A training data set that cannot be used (no images, fewer than two classes, ...)."""


class FactoryError(RetrieveError):
    """An index type that cannot be built, trained or updated as asked (--factory)."""


class TrainingError(RetrieveError):
    """Training that cannot go on (a loss that is not finite, a checkpoint that cannot resume)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after a resumable checkpoint was saved; ``str()`` says where."""


class ExportError(RetrieveError):
    """The network cannot be exported to ONNX, or its export answers otherwise than torch."""


class SearchError(RetrieveError):
    """A search FAISS refused or could not finish (a GPU out of memory, a limit of the index)."""
