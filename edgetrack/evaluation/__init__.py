"""Run a tracker over a dataset into pytracking-layout result files, and score result folders.

Three parts: ``results`` (the result files, which tracker wrote a folder, resuming),
``running`` (``track_sequence``, the one tracking loop, and ``run_eval`` with its worker
processes) and ``scoring`` (scores of result folders, tables, plots). Everything public is
importable from here.
"""
from edgetrack.evaluation.results import (
    BUNDLE_IDENTITY_KEYS,
    IDENTITY_NOT_COMPARED,
    TRACKER_FILE,
    claim_results,
    describe_identity,
    find_result_files,
    identity_differences,
    is_complete,
    read_result_boxes,
    read_times,
    result_paths,
    write_results,
)
from edgetrack.evaluation.running import EvalRun, FrameProgress, TrackerSpec, run_eval, run_one, track_sequence
from edgetrack.evaluation.scoring import (
    TABLE_COLUMNS,
    image_size,
    markdown_table,
    missing_results,
    plot_curves,
    scorable,
    score_results,
    score_sequence,
    table_rows,
)
