"""Import alias: the holder moved to `serving.model.holder`; import it from there.

Kept only because `serving/extensions.py` (the router area's file) still imports this path;
delete it once that import says `serving.model.holder`.
"""

from serving.model.holder import ModelHolder

__all__ = ["ModelHolder"]
