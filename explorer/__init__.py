"""The explorer's logic (the Streamlit app in app.py and pages/ only draws): it imports planner,
never the reverse."""
