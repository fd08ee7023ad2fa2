# --- slot @{k}: DFX decoupler (PG375), hwpart slot control, reconfigurable partition -----
# PG375 decouples at once, with no notion of packets: the host stops routing into the
# slot and waits for slot_ctrl_@{k}'s RP-idle bit before it writes decoupler_@{k} 0x0.
create_bd_cell -type ip -vlnv xilinx.com:ip:dfx_decoupler decoupler_@{k}
set_property -dict [list CONFIG.ALL_PARAMS {HAS_AXI_LITE 1 HAS_SIGNAL_CONTROL 0 \
    INTF {rp_in {ID 0 VLNV xilinx.com:interface:axis_rtl:1.0 MODE master} \
          rp_out {ID 1 VLNV xilinx.com:interface:axis_rtl:1.0 MODE slave} \
          rp_ctrl {ID 2 VLNV xilinx.com:interface:aximm_rtl:1.0 PROTOCOL axi4lite MODE slave}}}] \
    [get_bd_cells decoupler_@{k}]
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M@{dec_port}_AXI] [get_bd_intf_pins decoupler_@{k}/s_axi_reg]
# switch master @{switch_master} -> decoupler (static side) -> RM input
connect_bd_intf_net [get_bd_intf_pins switch/M@{switch_master_2}_AXIS] [get_bd_intf_pins decoupler_@{k}/s_rp_in]
create_bd_cell -type container -reference rm_@{first_rm} slot_@{k}
set_property -dict [list CONFIG.ENABLE_DFX {true} \
    CONFIG.LIST_SYNTH_BD {@{synth_bds}} CONFIG.LIST_SIM_BD {@{synth_bds}}] [get_bd_cells slot_@{k}]
connect_bd_intf_net -intf_net slot_@{k}_in [get_bd_intf_pins decoupler_@{k}/rp_rp_in] [get_bd_intf_pins slot_@{k}/s_axis]
connect_bd_intf_net -intf_net slot_@{k}_out [get_bd_intf_pins slot_@{k}/m_axis] [get_bd_intf_pins decoupler_@{k}/rp_rp_out]
# RM output -> decoupler -> switch slave @{switch_slave}
connect_bd_intf_net [get_bd_intf_pins decoupler_@{k}/s_rp_out] [get_bd_intf_pins switch/S@{switch_slave_2}_AXIS]
# the RM's identity block, through the decoupler's AXI4-Lite interface
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M@{info_port}_AXI] [get_bd_intf_pins decoupler_@{k}/s_rp_ctrl]
connect_bd_intf_net [get_bd_intf_pins decoupler_@{k}/rp_rp_ctrl] [get_bd_intf_pins slot_@{k}/s_axil]
# slot control (sim/rtl/slot_ctrl.v, one RM per partition): watches the RP side of the
# decoupler's streams for RP idle, reads decouple_status, holds the RM in reset
create_bd_cell -type module -reference slot_ctrl slot_ctrl_@{k}
set_property -dict [list CONFIG.NUM_RMS {1}] [get_bd_cells slot_ctrl_@{k}]
connect_bd_intf_net [get_bd_intf_pins ctrl_xbar/M@{ctrl_port}_AXI] [get_bd_intf_pins slot_ctrl_@{k}/s_axil]
connect_bd_intf_net -intf_net slot_@{k}_in [get_bd_intf_pins slot_ctrl_@{k}/rp_in] [get_bd_intf_pins slot_@{k}/s_axis]
connect_bd_intf_net -intf_net slot_@{k}_out [get_bd_intf_pins slot_ctrl_@{k}/rp_out] [get_bd_intf_pins slot_@{k}/m_axis]
connect_bd_net [get_bd_pins decoupler_@{k}/decouple_status] [get_bd_pins slot_ctrl_@{k}/decouple_status]
connect_bd_net [get_bd_pins rst_inv/Res] [get_bd_pins slot_ctrl_@{k}/rst]
connect_bd_net [get_bd_pins $ps_clk] [get_bd_pins slot_ctrl_@{k}/clk]
# one RM per partition: RM 0 is always the active one, in reset while RM_RESET holds it
create_bd_cell -type ip -vlnv xilinx.com:ip:xlconstant rm_active_@{k}
set_property -dict [list CONFIG.CONST_WIDTH {8} CONFIG.CONST_VAL {0}] [get_bd_cells rm_active_@{k}]
connect_bd_net [get_bd_pins rm_active_@{k}/dout] [get_bd_pins slot_ctrl_@{k}/rm_active]
connect_bd_net [get_bd_pins slot_ctrl_@{k}/rm_reset] [get_bd_pins slot_ctrl_@{k}/rm_in_reset]
create_bd_cell -type ip -vlnv xilinx.com:ip:util_vector_logic rm_rstn_@{k}
set_property -dict [list CONFIG.C_OPERATION {not} CONFIG.C_SIZE {1}] [get_bd_cells rm_rstn_@{k}]
connect_bd_net [get_bd_pins slot_ctrl_@{k}/rm_reset] [get_bd_pins rm_rstn_@{k}/Op1]
connect_bd_net [get_bd_pins $ps_clk] [get_bd_pins slot_@{k}/clk]
connect_bd_net [get_bd_pins rm_rstn_@{k}/Res] [get_bd_pins slot_@{k}/rstn]
