# Zynq UltraScale+ processing system (KV260, ZCU104): pl_clk0 for the fabric,
# M_AXI_HPM0_FPD for control, S_AXI_HP0_FPD for the DMA. Sourced by shell_bd.tcl.
create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e \
    -config {apply_board_preset "1"} [get_bd_cells ps]
set_property -dict [list \
    CONFIG.PSU__USE__M_AXI_GP0 {1} \
    CONFIG.PSU__USE__M_AXI_GP1 {0} \
    CONFIG.PSU__USE__M_AXI_GP2 {0} \
    CONFIG.PSU__USE__S_AXI_GP2 {1} \
    CONFIG.PSU__SAXIGP2__DATA_WIDTH {64} \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {@{pl_mhz}} \
] [get_bd_cells ps]
set ps_clk   ps/pl_clk0
set ps_rstn  ps/pl_resetn0
set ps_ctrl  ps/M_AXI_HPM0_FPD
set ps_mem   ps/S_AXI_HP0_FPD
connect_bd_net [get_bd_pins ps/maxihpm0_fpd_aclk] [get_bd_pins $ps_clk]
connect_bd_net [get_bd_pins ps/saxihp0_fpd_aclk] [get_bd_pins $ps_clk]
