# common-subset
"""Boot record: reasons, counters, crash-loop safe mode that power cuts neither cause nor clear."""

from scratch import remove_scratch, scratch_path

from firmware.storage import HEALTHY_MS, LOOP_BOOTS, BootRecord
from protocols.roles.common import BOOT_COMMAND, BOOT_CRASH, BOOT_OTHER, BOOT_POWER_ON, BOOT_WATCHDOG


def test_reasons_follow_what_the_previous_run_wrote():
    path = scratch_path("boot", "json")
    try:
        b = BootRecord(path, BOOT_WATCHDOG)
        assert b.reason == BOOT_POWER_ON and b.boots == 1  # first boot ever
        b = BootRecord(path, BOOT_POWER_ON)  # the run ended without a word: the chip's cause
        assert b.reason == BOOT_POWER_ON and b.boots == 2
        b.crashed()
        b = BootRecord(path, BOOT_POWER_ON)
        assert b.reason == BOOT_CRASH and b.crashes == 1
        b.rebooting()
        b = BootRecord(path, BOOT_OTHER)
        assert b.reason == BOOT_COMMAND
        b = BootRecord(path, BOOT_WATCHDOG)
        assert b.reason == BOOT_WATCHDOG and b.watchdogs == 1 and b.boots == 5
    finally:
        remove_scratch(path)


def test_three_crashes_without_a_healthy_minute_mean_safe_mode_until_commanded():
    path = scratch_path("boot", "json")
    try:
        BootRecord(path)
        for _ in range(LOOP_BOOTS):
            b = BootRecord(path)
            assert not b.crash_loop
            b.crashed()
        b = BootRecord(path)
        assert b.crash_loop and b.bad == LOOP_BOOTS
        b.ran(HEALTHY_MS)  # running fine in safe mode does not end it
        b = BootRecord(path, BOOT_POWER_ON)  # nor does a power cut
        assert b.crash_loop
        b.leave_safe_mode()
        b = BootRecord(path)
        assert not b.crash_loop and b.reason == BOOT_COMMAND and b.crashes == LOOP_BOOTS
    finally:
        remove_scratch(path)


def test_a_healthy_minute_clears_the_history_and_power_cuts_do_not_count():
    path = scratch_path("boot", "json")
    try:
        BootRecord(path)
        b = BootRecord(path)
        b.crashed()
        b = BootRecord(path)  # one crash
        b.crashed()
        b = BootRecord(path, BOOT_POWER_ON)
        assert b.bad == 2
        b = BootRecord(path, BOOT_POWER_ON)  # power cuts: neither counted nor cleared
        assert b.bad == 2 and not b.crash_loop
        b.ran(HEALTHY_MS - 1)
        assert b.bad == 2
        b.ran(HEALTHY_MS)
        assert b.bad == 0
        assert BootRecord(path).bad == 0
    finally:
        remove_scratch(path)


def test_a_damaged_record_starts_over():
    path = scratch_path("boot", "json")
    try:
        with open(path, "w") as f:
            f.write("{broken")
        b = BootRecord(path)
        assert b.boots == 1 and not b.crash_loop and b.reason == BOOT_POWER_ON
        assert BootRecord(path).boots == 2  # rewritten whole at boot
    finally:
        remove_scratch(path)
