"""Planning: requests become validated task graphs.

`graph.py` owns `TaskSpec` and `TaskGraph` (acyclic, costs per agent kind, hand-off tokens on
edges); `planner.py`, `builtin.py` and `templates.py` build graphs from requests.
"""
