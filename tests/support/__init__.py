"""The one harness that tests/ and bench/ share: real servers on free ports with fresh model
copies (`server`), request builders (`requests`), the processes a server starts (`procs`),
training through the API (`training`) and the schemathesis runs (`fuzzing`).

Imports run one way: bench/ may import tests.support; nothing under tests/ imports bench/.
"""
