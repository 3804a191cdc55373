"""The errors that reach a user: one class per kind of failure, each shown as one line.

Bad input (exit code 2) is a `TruthscopeError`; the subclass says what was bad, and the message
names the file (and the row, line, field or key):

    DataError       a data file (TruthfulQA, presets, statement sets, labels)
    SpecError       a sweep spec (YAML)
    RunLogError     a run folder: a damaged or foreign config.json, records.jsonl or summary.json
    LimitError      an input over a size or nesting limit (see `truthscope.limits`)
    CacheError      a cached artefact that is damaged or does not match its source and cannot be
                    rebuilt here (caches that can be rebuilt are, with a message)

A run that was asked for correctly and still failed (a sweep with failed cells) is a `RunFailed`
(exit code 1). The command line shows each as `error: <message>`, never a traceback unless
`truthscope --debug`; anything else escaping a command is a bug, shown the same way with exit 1.
"""


class TruthscopeError(Exception):
    """A problem with the user's input or environment, explained in one message (exit code 2)."""

    exit_code = 2


class DataError(TruthscopeError):
    """A data file is missing, unreadable or malformed; the message names the file and row."""


class SpecError(TruthscopeError):
    """A sweep spec is malformed; the message names the file and the key."""


class RunLogError(TruthscopeError):
    """A run folder holds a damaged, foreign or mismatched run log; the message names the file."""


class LimitError(TruthscopeError):
    """An input is larger or more deeply nested than truthscope reads; the message names the limit."""


class CacheError(TruthscopeError):
    """A cached artefact is damaged or stale and cannot be rebuilt here; the message says how to fix it."""


class RunFailed(Exception):
    """The input was fine but the run did not complete (say, sweep cells that raised): exit code 1.
    Not a `TruthscopeError`: nothing the user gave was wrong."""

    exit_code = 1
