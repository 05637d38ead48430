# DEFANGED DEMO SAMPLE for Dragonfly Fleet: the packed blob is empty.
import marshal
import zlib

_BLOB = b""


def _load():
    if _BLOB:
        exec(marshal.loads(zlib.decompress(_BLOB)))


def dumps(obj):
    return repr(obj)
