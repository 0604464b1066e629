"""Labelling: the person's good/bad judgements, notes and corrections, and the annotation queue.

- :mod:`pipeline.labels.refs`: ``SOURCE:EXTERNAL_ID`` refs.
- :mod:`pipeline.labels.events`: ``set_label``, ``undo_label``, ``stale_labels`` (append-only
  label events on a document or one message).
- :mod:`pipeline.labels.transfer`: ``export_labels`` / ``import_labels`` (portable JSONL).
- :mod:`pipeline.labels.queue`: ``AnnotationQueue`` and the views the ``plora annotate`` UI draws.

Text from the command line (``--correction @FILE``, ``--since``, ``--kind``) is parsed in
``flows/label_args.py``; what the domain itself accepts as text (a ref, a label value) here.
"""

from pipeline.labels.events import (
    KEEP,
    Keep,
    LabelResult,
    LabelState,
    StaleLabel,
    clean_correction,
    parse_value,
    set_label,
    stale_labels,
    undo_label,
)
from pipeline.labels.queue import (
    Action,
    AnnotationQueue,
    DocumentView,
    LabelView,
    MessageView,
    QueueFilter,
    build_queue,
    document_view,
)
from pipeline.labels.refs import Ref, parse_ref
from pipeline.labels.transfer import ExportLine, ExportReport, ImportReport, export_labels, import_labels

__all__ = [
    "KEEP",
    "Action",
    "AnnotationQueue",
    "DocumentView",
    "ExportLine",
    "ExportReport",
    "ImportReport",
    "Keep",
    "LabelResult",
    "LabelState",
    "LabelView",
    "MessageView",
    "QueueFilter",
    "Ref",
    "StaleLabel",
    "build_queue",
    "clean_correction",
    "document_view",
    "export_labels",
    "import_labels",
    "parse_ref",
    "parse_value",
    "set_label",
    "stale_labels",
    "undo_label",
]
