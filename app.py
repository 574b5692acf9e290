"""The explorer's entry point: ``streamlit run app.py``.

Only the navigation starts here (:func:`explorer.run.main`: the pages of :data:`explorer.run.PAGES`,
after the shared sidebar and the plan); the app's logic is in ``explorer/`` and the pages in
``pages/`` only draw. A fresh server's first run imports the planner (ONNX, sympy, plotly: a few
seconds): a line says so meanwhile, instead of a blank page.
"""

import sys

import streamlit as st

if __name__ == "__main__":  # Streamlit runs the script as __main__; a planning worker (spawned) imports
    loading = None if "explorer.run" in sys.modules else st.empty()  # it as __mp_main__ and must not draw
    if loading is not None:
        loading.caption("Starting the planner (a fresh server imports it once)...")

from explorer.run import main  # noqa: E402

if __name__ == "__main__":  # ... nor start an app of its own
    if loading is not None:
        loading.empty()
    main()
