"""Export a cleaned copy of a dataset: rules, sample weights, writers and provenance.

- ``rules``: ``ExportRules``, what the user chose; ``outcomes``: what the rules do to each example;
- ``inputs``: loading and checking against the store; ``writers``: manifests and image folders;
- ``paths``: safe names and paths; ``staging``: write aside, move into place when complete;
- ``csv_cells``: CSV quoting and the spreadsheet-formula rule;
- ``provenance``: ``sieve_export.json``; ``exporter``: ``preview_export`` and ``export_dataset``.
"""

from audit.export.exporter import (
    ExportPreview, ExportResult, export_dataset, plan_export, preview_export,
)
from audit.export.rules import FORMATS, ExportRules, split_rule_text

__all__ = ["FORMATS", "ExportPreview", "ExportResult", "ExportRules", "export_dataset",
           "plan_export", "preview_export", "split_rule_text"]
