"""The supervisor dashboard: server-rendered pages over the store, served by uvicorn.

Imported only when the dashboard is enabled or run on its own, so the bot does not need the web
stack to start.
"""
