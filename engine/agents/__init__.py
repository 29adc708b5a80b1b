"""Agents: the Agent protocol (`base`), built-in tool agents (`builtin`), the LLM agent loop.

Every agent returns Mutations against the snapshot it was given and never writes files.
"""
