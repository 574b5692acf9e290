"""The explorer's entry point: ``streamlit run app.py``.

Only the navigation starts here (:func:`explorer.run.main`: the pages of :data:`explorer.run.PAGES`,
after the shared sidebar and the plan); the app's logic is in ``explorer/`` and the pages in
``pages/`` only draw.
"""

from explorer.run import main

if __name__ == "__main__":  # Streamlit runs the script as __main__; a planning worker (spawned) imports
    main()                  # it as __mp_main__ and must not start an app of its own
