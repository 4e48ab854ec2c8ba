# streetedge node entry point: MicroPython runs main.py from the flash root after boot.
# update_boot (flash root) mounts the active code slot's ROMFS image at /rom; the image puts the
# board layer at `board` and the firmware at `firmware` (a node without slots imports them from files).
# Any unexpected exception is printed, then the board resets (the unix port
# exits non-zero): a node never sits half-alive, nor drops to the REPL.
import sys

try:
    import update_boot

    rom_heap = update_boot.mount()  # heap the image's buffer takes here, where a chip maps flash
    del sys.modules["update_boot"]  # its code is needed again only at the next boot
    del update_boot

    import board

    from firmware import node

    node.run(board.Board(), rom_heap)
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
