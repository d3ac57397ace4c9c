"""The text a DSPy program sees for a HELM request: one function, for training examples and for serving.

HELM's adapter renders either ``request.prompt`` or chat ``request.messages``; a chat request keeps every
message, non-user roles labelled, so a chat-adapter run spec trains on exactly the text it is served.
"""

from __future__ import annotations

from helm.common.request import Request


def program_input(request: Request) -> str:
    """The ``inputs`` field for HELM's rendered ``request``."""
    if request.messages:
        return "\n\n".join(
            message["content"] if message.get("role") in (None, "user") else f"{message['role']}: {message['content']}"
            for message in request.messages
        )
    return request.prompt
