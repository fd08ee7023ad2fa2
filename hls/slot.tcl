# --- slot @{k}: DFX decoupler (PG375) + reconfigurable partition --------------
create_bd_cell -type ip -vlnv xilinx.com:ip:dfx_decoupler decoupler_@{k}
set_property -dict [list CONFIG.ALL_PARAMS {HAS_AXI_LITE 1 HAS_SIGNAL_CONTROL 0 \
    INTF {rp_in {ID 0 VLNV xilinx.com:interface:axis_rtl:1.0 MODE master} \
          rp_out {ID 1 VLNV xilinx.com:interface:axis_rtl:1.0 MODE slave}}}] \
    [get_bd_cells decoupler_@{k}]
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M@{ctrl_port}_AXI] [get_bd_intf_pins decoupler_@{k}/s_axi_reg]
# switch master @{switch_master} -> decoupler (static side) -> RM input
connect_bd_intf_net [get_bd_intf_pins switch/M@{switch_master_2}_AXIS] [get_bd_intf_pins decoupler_@{k}/s_rp_in]
create_bd_cell -type container -reference rm_@{first_rm} slot_@{k}
set_property -dict [list CONFIG.ENABLE_DFX {true} \
    CONFIG.LIST_SYNTH_BD {@{synth_bds}} CONFIG.LIST_SIM_BD {@{synth_bds}}] [get_bd_cells slot_@{k}]
connect_bd_intf_net [get_bd_intf_pins decoupler_@{k}/rp_rp_in] [get_bd_intf_pins slot_@{k}/s_axis]
connect_bd_intf_net [get_bd_intf_pins slot_@{k}/m_axis] [get_bd_intf_pins decoupler_@{k}/rp_rp_out]
# RM output -> decoupler -> switch slave @{switch_slave}
connect_bd_intf_net [get_bd_intf_pins decoupler_@{k}/s_rp_out] [get_bd_intf_pins switch/S@{switch_slave_2}_AXIS]
connect_bd_net [get_bd_pins $ps_clk] [get_bd_pins slot_@{k}/clk]
connect_bd_net [get_bd_pins rst_ps/peripheral_aresetn] [get_bd_pins slot_@{k}/rstn]
