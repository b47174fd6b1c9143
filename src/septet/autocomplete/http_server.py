"""The HTTP endpoint the anchor's VS Code extension talks to.

``POST /autocomplete`` with ``{"prompt": "<text before the cursor>"}`` answers
``{"success": true, "prediction": "<top completion>", "probs": [...], "candidates": [...],
"suggestion": "<inline suggestion>"}`` (``prediction`` and ``probs`` as in
vpj/python_autocomplete; ``candidates`` lists every completion of the token with its
probability; ``suggestion`` may run on past the token, see ``Completer.suggest``). A
malformed request gets HTTP 400 and ``{"success": false, "error": "..."}``, never a crash.
"""

import threading
from typing import Any

# FastAPI reads the endpoint's annotations at run time, so Request must be a real name here
# (this module is only imported when a server is made).
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MAX_PROMPT_CHARS = 1_000_000


def create_app(completer: Any, limit: int = 5) -> FastAPI:
    """A FastAPI app serving ``completer``."""

    app = FastAPI(title="septet autocomplete")
    lock = threading.Lock()  # one completer, one context cache: requests take turns

    def error(message: str) -> JSONResponse:
        return JSONResponse({"success": False, "error": message}, status_code=400)

    @app.post("/autocomplete")
    async def autocomplete(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return error('the body is not JSON; send {"prompt": "<code before the cursor>"}')
        if not isinstance(body, dict) or "prompt" not in body:
            return error('the JSON body needs a "prompt" field holding the code before the cursor')
        prompt = body["prompt"]
        if not isinstance(prompt, str):
            return error(f'"prompt" must be a string, got {type(prompt).__name__}')
        if len(prompt) > MAX_PROMPT_CHARS:
            return error(f'"prompt" is longer than {MAX_PROMPT_CHARS} characters')
        with lock:
            candidates = completer.complete(prompt, limit=limit)
            suggestion = completer.suggest(prompt)
        return JSONResponse(
            {
                "success": True,
                "prediction": candidates[0].text if candidates else "",
                "probs": [c.probability for c in candidates],
                "candidates": [{"text": c.text, "probability": c.probability} for c in candidates],
                "suggestion": suggestion,
            }
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
