"""A simulated PYNQ board for hwpart's static shell (see ``docs/simulation.md``).

Import cost matters: ``hwpart.sim.fixed`` and ``hwpart.sim.rm`` need only
numpy; the board itself (``hwpart.sim.board``) imports PYNQ.
"""
