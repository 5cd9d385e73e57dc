"""The Streamlit web UI; it talks only to the REST API."""
