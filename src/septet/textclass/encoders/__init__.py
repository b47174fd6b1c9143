"""Text encoders behind one face, found by name: ``create_encoder("TextCNN", vocab_size)``."""

from septet.textclass.encoders.base import (
    LinearHead,
    TextEncoder,
    create_encoder,
    encoder_class,
    list_encoders,
    register_encoder,
)

__all__ = [
    "LinearHead",
    "TextEncoder",
    "create_encoder",
    "encoder_class",
    "list_encoders",
    "register_encoder",
]
