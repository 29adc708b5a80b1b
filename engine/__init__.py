"""The Delegation Machine engine: the swarm and everything it composes, with no editor in sight.

`swarm.Swarm` is the one facade; its parts (ring, schedule, state, supervise, memory, agents,
inference, economy, ledger) are described in docs/architecture.md. This package never imports
pygls, lsprotocol or the server package.
"""
