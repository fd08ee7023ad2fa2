# Vitis HLS synthesis of RM @{rm} (@{layers}) for @{part} at @{clock_ns} ns.
# Rendered by hwpart.overlay.tcl from hls/rm_hls.tcl; run from the RM folder:
#   vitis_hls -f hls.tcl
# The top is rm_axis.cpp: @{stream_bits}-bit AXI4-Stream words with TLAST around
# hls4ml's io_stream top @{top}() (hls4ml_prj/firmware).
open_project -reset hls_prj
set_top @{top}_axis
add_files hls4ml_prj/firmware/@{top}.cpp -cflags "-std=c++14 -Ihls4ml_prj/firmware"
add_files rm_axis.cpp -cflags "-std=c++14 -Ihls4ml_prj/firmware"
open_solution -reset solution1 -flow_target vivado
set_part {@{part}}
create_clock -period @{clock_ns} -name default
csynth_design
export_design -format ip_catalog -vendor hwpart.org -library rm -ipname @{top}_axis \
    -version 1.0 -output ip/@{top}_axis.zip
exit
