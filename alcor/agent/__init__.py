"""The host agent (``alcor agent``): a GoalStateProvisioner gRPC server that keeps desired
versus realized state and applies goal states through a programmer.

- ``state``: desired vs realized state, the plan (create / update / delete / unchanged) and the
  generation rules; no I/O.
- ``programmer``: the interface a data-plane driver implements, and the recording programmer.
- ``server``: the gRPC edge (the only agent module that imports grpc).
- ``registration``: the node's registration with the nodes API.
- ``runner``: the process: serve, register, ask the controller for the full goal state.
"""
