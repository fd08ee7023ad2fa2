"""What runs on a PYNQ board: the board agent, ``hwpart board check``, deploy's board side.

A board image has Python, numpy, pynq and pyzmq, and no torch, rich, pydantic or
hls4ml (installing them there is not an option). So every module in this
package imports only the standard library, numpy, pynq and zmq, never another
part of hwpart that does; ``tests/test_board_imports.py`` imports the package
with torch made unimportable. It runs on Python 3.10 (PYNQ 3.0.x on the
Zynq-7000) as well as PYNQ 3.1/4.0 on UltraScale+.
"""
