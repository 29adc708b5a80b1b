"""Tests of the built-in tool agents, the bundled semgrep rules and the sample workspace."""
