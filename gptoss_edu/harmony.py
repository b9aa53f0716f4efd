"""`gptoss_edu.harmony` is `gptoss_edu.tokenizer.harmony` (chapter 2), importable by either name:

import gptoss_edu as ge;  ge.harmony.render(...)
from gptoss_edu.harmony import Message, render, parse
"""

import sys

from .tokenizer import harmony as _harmony

sys.modules[__name__] = _harmony
