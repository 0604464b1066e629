"""Error roots of the pipeline layer. The CLI prints each as one line: UsageError exits 2,
the others exit 1. Each carries its context (source, run id, adapter ref) in the message."""


class PloraError(Exception):
    """Work that failed: a source, a build, a run."""


class UsageError(Exception):
    """A wrong argument or reference given by the person (unknown ref, bad option value)."""


class IngestError(PloraError):
    pass


class TrainingError(PloraError):
    pass


class RegistryError(PloraError):
    pass


class DatasetError(PloraError):
    pass
