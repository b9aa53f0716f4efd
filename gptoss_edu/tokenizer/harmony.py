"""`gptoss_edu.tokenizer.harmony`: the harmony chat format's old address, kept so that existing
code keeps working. The code lives in the package gptoss_edu.harmony (chapter 2); this module only
re-exports its public names (the same objects).
"""

from gptoss_edu.harmony import *  # noqa: F403  (the same objects, by the package's own list)
from gptoss_edu.harmony import __all__  # noqa: F401
