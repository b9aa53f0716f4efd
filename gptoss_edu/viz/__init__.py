"""Pictures of gpt-oss: the architecture diagram (chapter 0) and, in later chapters, widgets
that show which experts each token activates."""

from .diagram import draw_model

__all__ = ["draw_model"]
