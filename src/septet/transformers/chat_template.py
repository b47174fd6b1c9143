"""Chat templates: the Jinja2 programs instruct models ship to turn a list of messages into the
exact prompt text they were trained on.

Rendering follows the conventions the published templates are written against (those of Hugging
Face transformers' ``apply_chat_template``), so the same template gives the same text:
- a sandboxed, immutable environment (a template from a download cannot reach Python internals);
- ``trim_blocks`` and ``lstrip_blocks`` on, and the ``loopcontrols`` extension (break/continue);
- ``raise_exception(message)`` and ``strftime_now(format)`` as globals;
- a ``tojson`` filter that keeps non-ASCII characters and does not HTML-escape;
- the tokenizer's special tokens (``bos_token``, ``eos_token``, ...) as variables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from septet.errors import ConfigError, InputError

Message = Mapping[str, Any]


class ChatTemplateError(InputError):
    """The chat template refused the conversation (its own ``raise_exception``) or failed."""


def render_chat_template(
    template: str,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    **variables: Any,
) -> str:
    """Render ``messages`` (dicts with ``role`` and ``content``) through ``template``."""
    if not messages:
        raise InputError("cannot render a chat template for an empty conversation; give a message")
    plain_messages = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InputError(
                f"chat message {index} is a {type(message).__name__}, not a dict with "
                "'role' and 'content'"
            )
        # Keys set to None are dropped: templates test for a key's presence, not its value.
        plain_messages.append({k: v for k, v in message.items() if v is not None})
    compiled = _compile(template)
    import jinja2

    try:
        return compiled.render(
            messages=plain_messages,
            tools=list(tools) if tools is not None else None,
            documents=list(documents) if documents is not None else None,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
    except jinja2.exceptions.TemplateError as exc:
        raise ChatTemplateError(f"the chat template rejected the conversation: {exc}") from exc


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # pragma: no cover - jinja2 is in the transformers extra
        from septet.errors import MissingDependencyError

        raise MissingDependencyError("jinja2", "transformers") from exc

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    try:
        return environment.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ConfigError(
            f"the chat template is not valid Jinja2 (line {exc.lineno}): {exc}"
        ) from exc
