"""The local stack: emulators, their processes and the DirectRunner speed-ups; used only by local entry points."""
