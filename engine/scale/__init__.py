"""Scale-out: agent workers on other hosts through Redis Streams (issue 17, docs/scale-out.md).

Owns the transport between one host (the process that owns the workspace, its CRDT and its
ledger) and any number of worker processes: the wire messages (`wire`), the connection and its
credentials (`connection`), the content-addressed snapshot blobs (`blobs`), the host side
(`host`: remote worker slots, fencing tokens, reclaiming, the ledger mirror) and the worker
process (`worker`). Agents on a worker return Mutations against the snapshot versions they
were given; the host applies them through the same lease + CRDT + supervision path as a local
agent's. Imports neither pygls nor lsprotocol.
"""
