"""Preference data: every format read into one record, views per method, tokenization.

records -> views -> token batches: `read_records` reads a file, a saved `datasets` folder or a
Hub id into `PromptGroup`s; `make_view` shapes them for a method; `tokenize` makes token ids.
"""

from preftune.data.batch import PreferenceBatch, TokenizedGroup, collate
from preftune.data.reader import ReadResult, check_records, read_records
from preftune.data.records import PromptGroup, Response
from preftune.data.summary import describe, summarize
from preftune.data.tokenize import TokenizeStats, tokenize
from preftune.data.views import PAIRINGS, VIEWS, drop_ties, make_view, validate_for

__all__ = [
    "PAIRINGS",
    "VIEWS",
    "PreferenceBatch",
    "PromptGroup",
    "ReadResult",
    "Response",
    "TokenizeStats",
    "TokenizedGroup",
    "check_records",
    "collate",
    "describe",
    "drop_ties",
    "make_view",
    "read_records",
    "summarize",
    "tokenize",
    "validate_for",
]
