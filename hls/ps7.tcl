# Zynq-7000 processing system (PYNQ-Z2): FCLK_CLK0 for the fabric, M_AXI_GP0 for
# control, S_AXI_HP0 for the DMA's memory traffic. Sourced by shell_bd.tcl.
create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
    -config {make_external "FIXED_IO, DDR" apply_board_preset "1"} [get_bd_cells ps]
set_property -dict [list \
    CONFIG.PCW_USE_M_AXI_GP0 {1} \
    CONFIG.PCW_USE_S_AXI_HP0 {1} \
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {64} \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {@{pl_mhz}} \
] [get_bd_cells ps]
set ps_clk   ps/FCLK_CLK0
set ps_rstn  ps/FCLK_RESET0_N
set ps_ctrl  ps/M_AXI_GP0
set ps_mem   ps/S_AXI_HP0
connect_bd_net [get_bd_pins ps/M_AXI_GP0_ACLK] [get_bd_pins $ps_clk]
connect_bd_net [get_bd_pins ps/S_AXI_HP0_ACLK] [get_bd_pins $ps_clk]
