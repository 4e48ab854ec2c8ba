# Runs test modules written in the common subset of CPython and MicroPython
# on the MicroPython unix port (which has no unittest): every top-level
# function named test_* is called with no arguments; an exception fails it.
#
#   MICROPYPATH=.:tests/protocols micropython -X heapsize=128K tests/mpy_run.py test_cbor test_modbus
#
# The last line is "N passed, N failed" so that CI and pytest can read it.
import gc
import sys


def run(module_names):
    passed = 0
    failed = 0
    for name in module_names:
        mod = __import__(name)
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            gc.collect()
            try:
                fn()
            except Exception as exc:
                failed += 1
                print("FAIL", name + "." + attr)
                sys.print_exception(exc)
            else:
                passed += 1
                print("ok  ", name + "." + attr)
    gc.collect()
    print("heap after tests: alloc", gc.mem_alloc(), "free", gc.mem_free())
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    # The runner's own folder (tests/) holds a tests/protocols folder that would
    # shadow the real protocols package: import only from MICROPYPATH.
    del sys.path[0]
    sys.exit(1 if run(sys.argv[1:]) else 0)
