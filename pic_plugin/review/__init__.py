"""Reviewing suggestions: the session, the local web server, the static report, the web page."""
