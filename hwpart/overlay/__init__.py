"""Overlay builder: FPGA layer groups -> hls4ml RMs -> a bundle under ``bitstreams/NAME/``.

Modules: candidates (which layers may share a slot), resources (estimated
cost), hls (hls4ml projects and C simulation), rtl (da4ml Verilog), adapter
(the RM's AXI-Stream wrapper), tcl (Vivado scripts), manifest (schema, sha256
checks), build (the pipeline), cli (``hwpart overlay ...``).
"""

from __future__ import annotations

from hwpart.overlay.cli import register_cli
from hwpart.overlay.manifest import Manifest, ManifestError, load_manifest

__all__ = ["Manifest", "ManifestError", "load_manifest", "register_cli"]
