# hwpart static shell for @{board} (@{part}), @{slots} reconfigurable slot(s).
# Rendered by hwpart.overlay.tcl from hls/shell_bd.tcl. One register map with the RTL
# shell (sim/rtl), the simulated board and the host driver (hwpart/board/regs.py,
# sim/README.md); the addresses below are hwpart.board.regs.shell_map's and
# manifest.yaml's, and the host reads them back from shell.hwh:
#   switch          base + 0x0_0000   AXI4-Stream switch (PG085)
#   decoupler_k     base + 0x0_1000*(1+k)  DFX Decoupler (PG375), HAS_AXI_LITE: 0x0 bit 0
#   dma             base + 0x1_0000   AXI DMA (PG021)
#   slot_ctrl_k     base + 0x2_0000 + 0x1000*k  hwpart slot control (sim/rtl/slot_ctrl.v)
#   slot_k/rm_info  base + 0x3_0000 + 0x1000*k  the RM's identity (sim/rtl/rm_info.v)
#
#   DMA MM2S -> switch S00   switch M00 -> DMA S2MM
#   switch M(1+k) -> decoupler k (rp side) -> slot_k (RM) -> decoupler k -> switch S(1+k)
#   slot_ctrl_k watches the decoupler's RP-side streams (RP idle) and resets the RM
#
# Needs Vivado with Dynamic Function eXchange (UG909); untested here (no Vivado).

set bundle [file normalize [file dirname [info script]]/..]
create_project -force shell_prj $bundle/vivado/shell_prj -part @{part}
set_property PR_FLOW 1 [current_project]
set_property ip_repo_paths [glob -nocomplain $bundle/rm*/ip] [current_project]
update_ip_catalog
# hwpart's own blocks, the same Verilog the RTL simulation runs (module references)
add_files -norecurse [glob $bundle/vivado/rtl/*.v]
update_compile_order -fileset sources_1

# --- one block design per RM: the HLS IP between two stream ports, and its identity
# block (rm_info: magic 'HWRM', rm_id = first 4 bytes of sha256(name), n_in, n_out)
foreach {rm rm_id n_in n_out} {@{rm_table}} {
    create_bd_design rm_$rm
    create_bd_cell -type ip -vlnv hwpart.org:rm:${rm}_axis:1.0 core
    create_bd_cell -type module -reference rm_info rm_info
    set_property -dict [list CONFIG.NUM_RMS {1} CONFIG.RM_IDS $rm_id CONFIG.RM_N_IN $n_in \
        CONFIG.RM_N_OUT $n_out] [get_bd_cells rm_info]
    create_bd_cell -type ip -vlnv xilinx.com:ip:xlconstant rm_active
    set_property -dict [list CONFIG.CONST_WIDTH {8} CONFIG.CONST_VAL {0}] [get_bd_cells rm_active]
    connect_bd_net [get_bd_pins rm_active/dout] [get_bd_pins rm_info/rm_active]
    create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:aximm_rtl:1.0 s_axil
    set_property CONFIG.PROTOCOL AXI4LITE [get_bd_intf_ports s_axil]
    connect_bd_intf_net [get_bd_intf_ports s_axil] [get_bd_intf_pins rm_info/s_axil]
    create_bd_intf_port -mode Slave  -vlnv xilinx.com:interface:axis_rtl:1.0 s_axis
    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:axis_rtl:1.0 m_axis
    set_property -dict [list CONFIG.TDATA_NUM_BYTES {@{stream_bytes}} CONFIG.HAS_TLAST {1}] \
        [get_bd_intf_ports s_axis]
    create_bd_port -dir I -type clk -freq_hz @{pl_hz} clk
    create_bd_port -dir I -type rst rstn
    set_property CONFIG.ASSOCIATED_BUSIF {s_axis:m_axis:s_axil} [get_bd_ports clk]
    connect_bd_intf_net [get_bd_intf_ports s_axis] [get_bd_intf_pins core/s_axis]
    connect_bd_intf_net [get_bd_intf_pins core/m_axis] [get_bd_intf_ports m_axis]
    connect_bd_net [get_bd_ports clk] [get_bd_pins core/ap_clk] [get_bd_pins rm_info/clk]
    connect_bd_net [get_bd_ports rstn] [get_bd_pins core/ap_rst_n]
    # the RTL blocks reset synchronously, active high
    create_bd_cell -type ip -vlnv xilinx.com:ip:util_vector_logic rst_inv
    set_property -dict [list CONFIG.C_OPERATION {not} CONFIG.C_SIZE {1}] [get_bd_cells rst_inv]
    connect_bd_net [get_bd_ports rstn] [get_bd_pins rst_inv/Op1]
    connect_bd_net [get_bd_pins rst_inv/Res] [get_bd_pins rm_info/rst]
    validate_bd_design
    save_bd_design
    close_bd_design [current_bd_design]
}

# --- the static shell ----------------------------------------------------------
create_bd_design shell
source $bundle/vivado/ps.tcl

create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_ps
connect_bd_net [get_bd_pins $ps_clk] [get_bd_pins rst_ps/slowest_sync_clk]
connect_bd_net [get_bd_pins $ps_rstn] [get_bd_pins rst_ps/ext_reset_in]

# control: one AXI4-Lite master, @{ctrl_ports} slaves (DMA, switch, per slot its decoupler,
# slot control and RM identity)
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect ctrl_xbar
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {@{ctrl_ports}}] [get_bd_cells ctrl_xbar]
connect_bd_intf_net [get_bd_intf_pins $ps_ctrl] [get_bd_intf_pins ctrl_xbar/S00_AXI]

# data: AXI DMA (PG021), simple mode, @{stream_bits}-bit streams, memory through HP0
create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma dma
set_property -dict [list CONFIG.c_include_sg {0} CONFIG.c_sg_length_width {26} \
    CONFIG.c_m_axis_mm2s_tdata_width {@{stream_bits}} CONFIG.c_s_axis_s2mm_tdata_width {@{stream_bits}} \
    CONFIG.c_m_axi_mm2s_data_width {64} CONFIG.c_m_axi_s2mm_data_width {64} \
    CONFIG.c_mm2s_burst_size {16} CONFIG.c_s2mm_burst_size {16}] [get_bd_cells dma]
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect mem_xbar
set_property -dict [list CONFIG.NUM_SI {2} CONFIG.NUM_MI {1}] [get_bd_cells mem_xbar]
connect_bd_intf_net [get_bd_intf_pins dma/M_AXI_MM2S] [get_bd_intf_pins mem_xbar/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins dma/M_AXI_S2MM] [get_bd_intf_pins mem_xbar/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins mem_xbar/M00_AXI] [get_bd_intf_pins $ps_mem]
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M00_AXI] [get_bd_intf_pins dma/S_AXI_LITE]

# AXI4-Stream switch (PG085) with control-register routing: S00 = DMA MM2S,
# S(1+k) = slot k output; M00 = DMA S2MM, M(1+k) = slot k input.
create_bd_cell -type ip -vlnv xilinx.com:ip:axis_switch switch
set_property -dict [list CONFIG.NUM_SI {@{switch_ports}} CONFIG.NUM_MI {@{switch_ports}} \
    CONFIG.ROUTING_MODE {1} CONFIG.TDATA_NUM_BYTES {@{stream_bytes}} CONFIG.HAS_TLAST {1} \
    CONFIG.ARB_ON_TLAST {1}] [get_bd_cells switch]
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M01_AXI] [get_bd_intf_pins switch/S_AXI_CTRL]
connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins switch/S00_AXIS]
connect_bd_intf_net [get_bd_intf_pins switch/M00_AXIS] [get_bd_intf_pins dma/S_AXIS_S2MM]

@{slot_cells}
create_bd_cell -type ip -vlnv xilinx.com:ip:util_vector_logic rst_inv
set_property -dict [list CONFIG.C_OPERATION {not} CONFIG.C_SIZE {1}] [get_bd_cells rst_inv]
connect_bd_net [get_bd_pins rst_ps/peripheral_aresetn] [get_bd_pins rst_inv/Op1]

# clocks and resets for everything in the shell
foreach pin [get_bd_pins -quiet -of_objects [get_bd_cells -filter {VLNV !~ "*processing_system7*" && VLNV !~ "*zynq_ultra_ps_e*"}] -filter {TYPE == clk}] {
    catch {connect_bd_net [get_bd_pins $ps_clk] $pin}
}
foreach pin [get_bd_pins -quiet -of_objects [get_bd_cells -filter {VLNV !~ "*proc_sys_reset*"}] -filter {TYPE == rst && DIR == I}] {
    catch {connect_bd_net [get_bd_pins rst_ps/peripheral_aresetn] $pin}
}

# --- addresses (must equal manifest.yaml) ---------------------------------------
@{addresses}
assign_bd_address
validate_bd_design
save_bd_design
make_wrapper -files [get_files shell.bd] -top -import
set_property top shell_wrapper [current_fileset]
