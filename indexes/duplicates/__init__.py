"""`retrieve duplicates`: finding the groups, reporting them, and acting on them (plans, journal, undo)."""
