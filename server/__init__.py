"""The language server: a pygls adapter between LSP clients and the engine's Swarm.

`handlers` registers every LSP feature; `server` holds the session; `convert` is the one place
engine types become LSP types; `cli` is the `delegation-machine` command line.
"""
