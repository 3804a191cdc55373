"""Scores as pure functions: of log-likelihoods (multiple choice) and of per-question values (intervals)."""
