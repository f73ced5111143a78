"""``turnout serve``: the same router behind an OpenAI-compatible HTTP server, for callers that are not Python.

Needs the ``serve`` extra (``pip install 'turnout[serve]'``): Starlette for
the app, uvicorn to serve it, python-multipart for audio uploads.

    turnout serve --port 8001                      # the command (turnout/cli/serve.py)
    uvicorn --factory turnout.serve:app_from_env   # the app, for your own ASGI server
"""

from ._app import ENDPOINTS, app_from_env, create_app

__all__ = ["ENDPOINTS", "app_from_env", "create_app"]
