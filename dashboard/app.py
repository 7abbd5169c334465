"""Sieve's dashboard: ``streamlit run dashboard/app.py`` (or ``python -m audit serve``).

The router: the dataset and run pickers in the sidebar, then the chosen page. A problem the
user can fix (``AuditError``) raised anywhere in a page is shown with the one error helper.
The page loads nothing from outside this server: the favicon is a file here (Streamlit turns a
``:material/...:`` page icon into a request to an outside font host).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAVICON = Path(__file__).resolve().parent / "favicon.png"
if str(PROJECT_ROOT) not in sys.path:
    # ``streamlit run`` puts only this folder on the path; the app imports the project.
    sys.path.insert(0, str(PROJECT_ROOT))

import streamlit as st  # noqa: E402

from audit.settings import check_data_home  # noqa: E402
from dashboard.context import current_store, sidebar_pickers  # noqa: E402
from dashboard.data import current_settings  # noqa: E402
from dashboard.errors import reported  # noqa: E402

PAGES = [
    st.Page("pages/explore.py", title="Explore", icon=":material/grid_view:", default=True),
    st.Page("pages/example.py", title="Example", icon=":material/image_search:"),
    st.Page("pages/insights.py", title="Insights", icon=":material/monitoring:"),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/database:"),
    st.Page("pages/jobs.py", title="Jobs", icon=":material/sync:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]

st.set_page_config(page_title="Sieve", page_icon=str(FAVICON), layout="wide")
page = st.navigation(PAGES)
with reported():
    check_data_home(current_settings())  # a read-only data home: one error line
    with current_store().reads_together():
        sidebar_pickers()
    page.run()
