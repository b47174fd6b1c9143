"""A Language Server Protocol server (pygls) offering the model's completions.

Documents are kept in sync by pygls's workspace from ``didOpen`` / ``didChange`` (incremental
edits); ``textDocument/completion`` completes the Python token at the cursor. Each item
replaces the typed part of the token (a text edit), so the editor's own filtering works.
``textDocument/inlineCompletion`` (LSP 3.18, the editor's grey "ghost text") answers the
inline suggestion, which may run on past the token (``Completer.suggest``).
"""

from __future__ import annotations

from typing import Any

SERVER_NAME = "septet-autocomplete"
TRIGGER_CHARACTERS = [".", "(", "[", ",", " ", "_", "="]


def create_server(completer: Any, limit: int = 8) -> Any:
    """A pygls LanguageServer serving ``completer``; call ``.start_io()`` to run it."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from septet import __version__

    server = LanguageServer(SERVER_NAME, __version__)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS),
    )
    def completion(ls: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
        document = ls.workspace.get_text_document(params.text_document.uri)
        offset = document.offset_at_position(params.position)
        before = document.source[:offset]
        _, typed = completer.split(before)
        start = (
            document.client_position_at_offset(offset - len(typed)) if typed else params.position
        )
        items = []
        for rank, candidate in enumerate(completer.complete(before, limit=limit)):
            word = typed + candidate.text
            items.append(
                types.CompletionItem(
                    label=word,
                    kind=types.CompletionItemKind.Text,
                    detail=f"septet {candidate.probability:.0%}",
                    sort_text=f"{rank:04d}",
                    filter_text=word,
                    text_edit=types.TextEdit(
                        range=types.Range(start=start, end=params.position), new_text=word
                    ),
                )
            )
        return types.CompletionList(is_incomplete=True, items=items)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION)
    def inline_completion(
        ls: LanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        document = ls.workspace.get_text_document(params.text_document.uri)
        offset = document.offset_at_position(params.position)
        before = document.source[:offset]
        _, typed = completer.split(before)
        suggestion = completer.suggest(before)
        if not suggestion:
            return types.InlineCompletionList(items=[])
        start = document.client_position_at_offset(offset - len(typed))
        item = types.InlineCompletionItem(
            insert_text=typed + suggestion, range=types.Range(start=start, end=params.position)
        )
        return types.InlineCompletionList(items=[item])

    return server
