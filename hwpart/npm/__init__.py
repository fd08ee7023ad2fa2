"""The Network Partitioning Manager (NPM): live re-allocation while a model runs.

It sits above the runtime and the monitor and is never imported by them
(``docs``/``DESIGN.md``, "Where new code goes"): the engine runs a plan, the
NPM watches the monitor's snapshots and changes the plan. This package
``__init__`` imports nothing, so importing one NPM module (e.g. the scenario
injector) does not pull in torch or the runtime.
"""
