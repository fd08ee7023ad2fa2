"""Pipeline stages on a Ray cluster: stage hosts as actors, nodes and boards as resources.

An optional extra (``pip install 'hwpart[cluster]'``, Ray): nothing in the core
(runtime, monitor, NPM) imports this package. It plugs into the engine through
the Device protocol: a :class:`~hwpart.cluster.device.RayDevice` loads a stage
into an actor on one node and runs batches there, so the pipeline engine
(:class:`hwpart.runtime.Pipeline`) keeps its ordering, back-pressure and
lossless fault handling unchanged -- the same code, not a copy of it.

Modules: ``env`` (connecting, loopback, token auth, a local multi-node cluster),
``host`` (the actors), ``device`` (the Device and the values between actors),
``topology`` (nodes, their devices, measured links), ``plan`` (the planner's
view of the cluster), ``run`` (a run on the cluster, static or adaptive),
``cli`` (``hwpart run/devices --cluster``). See docs/cluster.md.
"""

from __future__ import annotations
