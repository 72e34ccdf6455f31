"""neuron_export studio: `streamlit run app.py`."""

import logging
from pathlib import Path

import streamlit as st

from studio import auth, ui

st.set_page_config(page_title="neuron_export studio", page_icon=":material/bolt:", layout="wide")
auth.require_password()
services = ui.services()

PAGES = [
    ("views/start.py", "Start here", ":material/waving_hand:"),
    ("views/compile.py", "Compile", ":material/bolt:"),
    ("views/jobs.py", "Jobs", ":material/list_alt:"),
    ("views/artifacts.py", "Artifacts", ":material/inventory_2:"),
    ("views/report.py", "Validation report", ":material/fact_check:"),
    ("views/playground.py", "Playground", ":material/science:"),
    ("views/benchmark.py", "Benchmark", ":material/speed:"),
    ("views/system.py", "System", ":material/monitor_heart:"),
]
here = Path(__file__).parent
navigation = st.navigation(
    [st.Page(page, title=title, icon=icon, default=index == 0)
     for index, (page, title, icon) in enumerate(PAGES) if (here / page).is_file()]
)
with st.sidebar:
    st.markdown("**neuron_export studio**")
    st.caption(f"Workspace: `{services.workspace.root}`")
if navigation.title != PAGES[0][1]:
    # Every page but Start here imports torch and transformers: never while the warm-up thread is importing
    # them (transformers' lazy modules raise "cannot import name" to a second importing thread).
    ui.warm_up().join()
try:
    navigation.run()
except Exception as error:  # a page bug: one readable line on screen, the traceback in the server log
    logging.getLogger("neuron_export.studio").exception("page %s failed", navigation.title)
    ui.show_error(error)
ui.warm_up()  # torch and transformers load in the background once the first page is on screen
