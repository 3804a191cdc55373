"""Tasks: what to ask a `LanguageModel`, how to score it, and the run that records it."""
