"""Small assertion helpers shared by protocol tests on CPython and MicroPython."""
import json

_VECTORS = "vectors/"


def raises(exc_type, fn, *args):
    """Call fn(*args) and return the exception; fail unless it is an exc_type."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%s did not raise %s for %r" % (fn, exc_type.__name__, args))


def vectors(name):
    """Load a JSON vector file from tests/protocols/vectors/."""
    with open(_here() + _VECTORS + name) as f:
        return json.load(f)


def _here():
    path = __file__
    i = path.rfind("/")
    return path[: i + 1] if i >= 0 else ""
