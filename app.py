"""The explorer's entry point: ``streamlit run app.py``.

Only the navigation starts here (:func:`explorer.run.main`: the pages of :data:`explorer.run.PAGES`,
after the shared sidebar and the plan); the app's logic is in ``explorer/`` and the pages in
``pages/`` only draw.
"""

from explorer.run import main

main()
