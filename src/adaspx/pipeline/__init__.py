"""File-level stages of an active-learning round: what each Snakemake rule runs.

Each function reads its inputs (dataset manifest, HDF5 artifacts, CSV tables), calls the library modules that
hold the logic, and writes its outputs atomically. Workflow scripts only unpack ``snakemake`` objects into these
calls, so every stage can also be run and tested without Snakemake. One module per stage's I/O or concern:

- :mod:`~adaspx.pipeline.dataset`: ``synthesize_dataset``, ``prepare_dataset``;
- :mod:`~adaspx.pipeline.superpixels`: ``base_superpixels``, ``oracle_superpixels``;
- :mod:`~adaspx.pipeline.model`: ``train``, ``evaluate``, ``infer``;
- :mod:`~adaspx.pipeline.regions`: ``merge_superpixels``;
- :mod:`~adaspx.pipeline.selection`: ``acquire``;
- :mod:`~adaspx.pipeline.people`: ``ask_people``, people's answers from Label Studio;
- :mod:`~adaspx.pipeline.answers`: ``annotate``;
- :mod:`~adaspx.pipeline.summary`: ``summarize`` and its learning curves;
- :mod:`~adaspx.pipeline.logs`: ``log_to``, a rule's log file;
- :mod:`~adaspx.pipeline.common`: what several stages share (``pool_ids``).
"""

from adaspx.artifacts import SCHEMA_PROBS, SCHEMA_TARGETS, at_label_resolution
from adaspx.pipeline.answers import ANSWER_COLUMNS, annotate
from adaspx.pipeline.common import pool_ids
from adaspx.pipeline.dataset import prepare_dataset, synthesize_dataset
from adaspx.pipeline.logs import log_to
from adaspx.pipeline.model import evaluate, infer, train
from adaspx.pipeline.people import PeopleError, ask_people
from adaspx.pipeline.regions import merge_superpixels
from adaspx.pipeline.selection import SELECTION_COLUMNS, acquire
from adaspx.pipeline.summary import SUMMARY_CLASS_COLUMNS, SUMMARY_COLUMNS, plot_learning_curves, summarize
from adaspx.pipeline.superpixels import base_superpixels, oracle_superpixels

__all__ = [
    "ANSWER_COLUMNS",
    "PeopleError",
    "SCHEMA_PROBS",
    "SCHEMA_TARGETS",
    "SELECTION_COLUMNS",
    "SUMMARY_CLASS_COLUMNS",
    "SUMMARY_COLUMNS",
    "acquire",
    "annotate",
    "ask_people",
    "at_label_resolution",
    "base_superpixels",
    "evaluate",
    "infer",
    "log_to",
    "merge_superpixels",
    "oracle_superpixels",
    "plot_learning_curves",
    "pool_ids",
    "prepare_dataset",
    "summarize",
    "synthesize_dataset",
    "train",
]
