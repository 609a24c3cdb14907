"""Import alias: model sources moved to `serving.model.source`; import them from there.

Kept only because `serving/extensions.py` (the router area's file) still imports this path;
delete it once that import says `serving.model.source`.
"""

from serving.model.source import create_source

__all__ = ["create_source"]
