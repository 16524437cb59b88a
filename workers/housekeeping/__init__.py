"""Housekeeping: the owners of every open state's deadline (reaper, send evidence, batch lookups, hang-up,
scheduled runs)."""
