# Build every bitstream of this bundle (@{name}, board @{board}):
#   vivado -mode batch -source vivado/build_all.tcl
# 1. Vitis HLS for each RM (needs vitis_hls on PATH), 2. the static shell block
# design, 3. DFX configurations, implementation and bitstreams.
set bundle [file normalize [file dirname [info script]]/..]
foreach rm {@{rm_names}} {
    set cwd [pwd]
    cd $bundle/$rm
    exec vitis_hls -f hls.tcl >@@ stdout
    file mkdir ip
    catch {exec unzip -o ip/${rm}_axis.zip -d ip >@@ stdout}
    cd $cwd
}
source $bundle/vivado/shell_bd.tcl
close_project
source $bundle/vivado/dfx.tcl
