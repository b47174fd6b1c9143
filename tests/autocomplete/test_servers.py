"""The editor-facing servers, run for real: the HTTP endpoint under uvicorn on loopback, and
the LSP server as a subprocess on stdio talking to pygls's LanguageClient."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from septet.autocomplete.completion import load_completer


@pytest.fixture(scope="module")
def http_url(tiny_model: Path) -> Iterator[str]:
    import uvicorn

    from septet.autocomplete.http_server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(load_completer(tiny_model)), port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_http_endpoint_answers_in_the_anchor_format(http_url: str) -> None:
    """POST /autocomplete {"prompt"} -> {"success", "prediction", "probs"} as the anchor's
    VS Code extension expects."""
    reply = httpx.post(f"{http_url}/autocomplete", json={"prompt": "import json\n\njson.lo"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True
    assert isinstance(body["prediction"], str) and body["prediction"]
    assert body["prediction"] == body["candidates"][0]["text"]
    assert len(body["probs"]) == len(body["candidates"]) >= 1
    assert all(0 <= p <= 1 for p in body["probs"])
    assert body["probs"] == sorted(body["probs"], reverse=True)
    assert isinstance(body["suggestion"], str)  # the inline suggestion, maybe past the token


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"text": "x"}', '"prompt" field'),
        (b'{"prompt": 42}', "must be a string"),
        (b"[1, 2]", '"prompt" field'),
    ],
)
def test_malformed_requests_get_an_error_not_a_crash(
    http_url: str, content: bytes, message: str
) -> None:
    reply = httpx.post(
        f"{http_url}/autocomplete", content=content, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.json()["success"] is False and message in reply.json()["error"]
    # the server still works afterwards
    assert httpx.post(f"{http_url}/autocomplete", json={"prompt": "x"}).json()["success"]


def test_lsp_server_answers_completion_from_a_real_client(tiny_model: Path) -> None:
    """Started as `septet autocomplete lsp`, the server keeps the document in sync through
    didOpen and an incremental didChange, and answers textDocument/completion."""
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    uri = "file:///tmp/example.py"

    async def session() -> tuple[types.CompletionList, types.InlineCompletionList]:
        client = LanguageClient("septet-test", "1")
        await client.start_io(
            sys.executable, "-m", "septet", "autocomplete", "lsp", "--model", str(tiny_model)
        )
        try:
            await asyncio.wait_for(
                client.initialize_async(
                    types.InitializeParams(capabilities=types.ClientCapabilities())
                ),
                120,
            )
            client.initialized(types.InitializedParams())
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(uri, "python", 1, "import json\n\n")
                )
            )
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(version=2, uri=uri),
                    [
                        types.TextDocumentContentChangePartial(
                            range=types.Range(types.Position(2, 0), types.Position(2, 0)),
                            text="json.lo",
                        )
                    ],
                )
            )
            result = await asyncio.wait_for(
                client.text_document_completion_async(
                    types.CompletionParams(types.TextDocumentIdentifier(uri), types.Position(2, 7))
                ),
                60,
            )
            inline = await asyncio.wait_for(
                client.text_document_inline_completion_async(
                    types.InlineCompletionParams(
                        context=types.InlineCompletionContext(
                            trigger_kind=types.InlineCompletionTriggerKind.Automatic
                        ),
                        text_document=types.TextDocumentIdentifier(uri),
                        position=types.Position(2, 7),
                    )
                ),
                60,
            )
            await client.shutdown_async(None)
            client.exit(None)
            return result, inline
        finally:
            await asyncio.wait_for(client.stop(), 30)

    result, inline = asyncio.run(session())
    assert isinstance(result, types.CompletionList) and result.items
    for item in result.items:
        assert item.label.startswith("lo")  # the whole token, replacing the typed "lo"
        edit = item.text_edit
        assert edit.range.start == types.Position(2, 5) and edit.range.end == types.Position(2, 7)
        assert edit.new_text == item.label
    assert [i.sort_text for i in result.items] == sorted(i.sort_text for i in result.items)
    # the inline suggestion is the one the same model makes in-process for the synced text
    from septet.autocomplete.completion import load_completer

    expected = load_completer(tiny_model).suggest("import json\n\njson.lo")
    got = [(i.insert_text, i.range.start, i.range.end) for i in inline.items]
    want = [("lo" + expected, types.Position(2, 5), types.Position(2, 7))] if expected else []
    assert got == want
