# streetedge node entry point: MicroPython runs main.py from the flash root after boot.
# The image puts the board layer at `board` and the firmware at `firmware`.
# Any unexpected exception is printed, then the board resets (the unix port
# exits non-zero): a node never sits half-alive, nor drops to the REPL.
import sys

try:
    import board

    from firmware import node

    node.run(board.Board())
    raise RuntimeError("the node's tasks ended")
except KeyboardInterrupt:
    sys.exit(130)
except Exception as exc:  # the top-level supervisor
    sys.print_exception(exc)
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        sys.exit(1)
