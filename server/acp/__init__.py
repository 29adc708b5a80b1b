"""The Agent Client Protocol front door: `delegation-machine acp`, an ACP agent over stdio.

Owns the translation between ACP (JSON-RPC over stdio, through the `agent-client-protocol`
SDK) and the engine's `Swarm`: sessions, prompts as delegations, streamed plan and tool-call
updates, permission before a delegation's changes are kept, and the client's file system.
The engine never imports this package nor the SDK.
"""
