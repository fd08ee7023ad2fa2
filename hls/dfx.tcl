# DFX configurations and implementation for @{board}: @{n_configs} configuration(s)
# that together place every RM in every slot once, so each (slot, RM) pair gets
# its own partial bitstream. Rendered by hwpart.overlay.tcl from hls/dfx.tcl.
# Config j puts RM (j + k) mod R into slot k (R = number of RMs).

set bundle [file normalize [file dirname [info script]]/..]
open_project $bundle/vivado/shell_prj/shell_prj.xpr
source $bundle/vivado/pblocks.tcl

@{configs}
launch_runs synth_1 -jobs 4
wait_on_run synth_1
launch_runs [get_runs impl_*] -to_step write_bitstream -jobs 4
wait_on_runs [get_runs impl_*]

# --- copy the outputs to the paths manifest.yaml records ------------------------
file mkdir $bundle/shell $bundle/partials
set runs $bundle/vivado/shell_prj/shell_prj.runs
file copy -force $runs/impl_1/shell_wrapper.bit $bundle/@{shell_bit}
file copy -force [lindex [glob $bundle/vivado/shell_prj/shell_prj.gen/sources_1/bd/shell/hw_handoff/shell.hwh] 0] $bundle/@{shell_hwh}
@{copies}
puts "hwpart: bitstreams written; run `hwpart overlay seal $bundle` to record their sha256"
