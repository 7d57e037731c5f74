"""The local web app and JSON API (``cnnlab serve``); see app.py."""
