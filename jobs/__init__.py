"""Background audit jobs: a queue in the store, worker processes that claim and run jobs.

``jobs.queue`` is what the CLI and the dashboard call (enqueue, list, cancel, rerun, logs,
crash recovery); ``jobs.worker`` is the process that runs jobs (``python -m jobs worker``);
``jobs.follow`` draws a terminal progress bar. This package never imports streamlit or the CLI.
"""
