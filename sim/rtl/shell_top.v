// shell_top: the static shell for RTL simulation.
//
//   DMA MM2S --s_axis--> [switch slave 0]
//   [switch master 0] --m_axis--> DMA S2MM
//   [switch master 1+k] -> dfx_decoupler k -> rm_slot k -> dfx_decoupler k
//                                                      -> [switch slave 1+k]
//
// AXI4-Lite address map (s_axil, 4 KiB windows like a Vivado address map):
//   0x0000 + 0x000..0xFFF   axis_switch (PG085 registers: 0x00 CTRL,
//                           0x40 + 4*i MI_MUX for master i)
//   0x1000 * (1+k)          slot k control (slot_ctrl.v: DECOUPLE, STATUS,
//                           RM_SELECT, RM_RESET, RM_ACTIVE, NUM_RMS)
//   anything else           DECERR
// Switch ports: slave 0 = DMA MM2S, slave 1+k = slot k output;
//               master 0 = DMA S2MM, master 1+k = slot k input.
// After reset every switch master is disabled, every slot is coupled and
// holds RM 0 (DEFAULT_RM).
`default_nettype none
module shell_top #(
    parameter NUM_SLOTS    = 2,
    parameter DATA_WIDTH   = 32,
    parameter NUM_RMS      = 2,
    parameter RESET_CYCLES = 4,
    parameter [7:0] DEFAULT_RM = 8'd0
) (
    input  wire                  clk,
    input  wire                  rst,

    // from DMA MM2S
    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    // to DMA S2MM
    output wire [DATA_WIDTH-1:0] m_axis_tdata,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast,

    input  wire [15:0]           s_axil_awaddr,
    input  wire [2:0]            s_axil_awprot,
    input  wire                  s_axil_awvalid,
    output wire                  s_axil_awready,
    input  wire [31:0]           s_axil_wdata,
    input  wire [3:0]            s_axil_wstrb,
    input  wire                  s_axil_wvalid,
    output wire                  s_axil_wready,
    output wire [1:0]            s_axil_bresp,
    output wire                  s_axil_bvalid,
    input  wire                  s_axil_bready,
    input  wire [15:0]           s_axil_araddr,
    input  wire [2:0]            s_axil_arprot,
    input  wire                  s_axil_arvalid,
    output wire                  s_axil_arready,
    output wire [31:0]           s_axil_rdata,
    output wire [1:0]            s_axil_rresp,
    output wire                  s_axil_rvalid,
    input  wire                  s_axil_rready
);
    localparam NP = NUM_SLOTS + 1;   // switch ports each way
    localparam NT = NUM_SLOTS + 1;   // AXI-Lite targets
    localparam AW = 16;
    localparam DW = DATA_WIDTH;
    localparam KW = (DATA_WIDTH + 7) / 8;

    // ---------------- AXI-Lite demux ----------------
    wire [NT*AW-1:0] l_awaddr, l_araddr;
    wire [NT*3-1:0]  l_awprot, l_arprot;
    wire [NT-1:0]    l_awvalid, l_awready, l_wvalid, l_wready, l_bvalid, l_bready;
    wire [NT-1:0]    l_arvalid, l_arready, l_rvalid, l_rready;
    wire [NT*32-1:0] l_wdata, l_rdata;
    wire [NT*4-1:0]  l_wstrb;
    wire [NT*2-1:0]  l_bresp, l_rresp;

    axil_demux #(.ADDR_WIDTH(AW), .WINDOW_BITS(12), .N_TARGETS(NT)) u_demux (
        .clk(clk), .rst(rst),
        .s_axil_awaddr(s_axil_awaddr), .s_axil_awprot(s_axil_awprot),
        .s_axil_awvalid(s_axil_awvalid), .s_axil_awready(s_axil_awready),
        .s_axil_wdata(s_axil_wdata), .s_axil_wstrb(s_axil_wstrb),
        .s_axil_wvalid(s_axil_wvalid), .s_axil_wready(s_axil_wready),
        .s_axil_bresp(s_axil_bresp), .s_axil_bvalid(s_axil_bvalid),
        .s_axil_bready(s_axil_bready),
        .s_axil_araddr(s_axil_araddr), .s_axil_arprot(s_axil_arprot),
        .s_axil_arvalid(s_axil_arvalid), .s_axil_arready(s_axil_arready),
        .s_axil_rdata(s_axil_rdata), .s_axil_rresp(s_axil_rresp),
        .s_axil_rvalid(s_axil_rvalid), .s_axil_rready(s_axil_rready),
        .m_axil_awaddr(l_awaddr), .m_axil_awprot(l_awprot),
        .m_axil_awvalid(l_awvalid), .m_axil_awready(l_awready),
        .m_axil_wdata(l_wdata), .m_axil_wstrb(l_wstrb),
        .m_axil_wvalid(l_wvalid), .m_axil_wready(l_wready),
        .m_axil_bresp(l_bresp), .m_axil_bvalid(l_bvalid), .m_axil_bready(l_bready),
        .m_axil_araddr(l_araddr), .m_axil_arprot(l_arprot),
        .m_axil_arvalid(l_arvalid), .m_axil_arready(l_arready),
        .m_axil_rdata(l_rdata), .m_axil_rresp(l_rresp),
        .m_axil_rvalid(l_rvalid), .m_axil_rready(l_rready)
    );

    // ---------------- switch ----------------
    wire [NP*DW-1:0] sw_s_tdata, sw_m_tdata;
    wire [NP*KW-1:0] sw_m_tkeep;
    wire [NP-1:0]    sw_s_tvalid, sw_s_tready, sw_s_tlast;
    wire [NP-1:0]    sw_m_tvalid, sw_m_tready, sw_m_tlast;

    assign sw_s_tdata[0 +: DW] = s_axis_tdata;
    assign sw_s_tvalid[0]      = s_axis_tvalid;
    assign sw_s_tlast[0]       = s_axis_tlast;
    assign s_axis_tready       = sw_s_tready[0];

    assign m_axis_tdata        = sw_m_tdata[0 +: DW];
    assign m_axis_tvalid       = sw_m_tvalid[0];
    assign m_axis_tlast        = sw_m_tlast[0];
    assign sw_m_tready[0]      = m_axis_tready;

    axis_switch #(
        .S_COUNT(NP), .M_COUNT(NP), .DATA_WIDTH(DW), .KEEP_ENABLE(0),
        .AXIL_ADDR_WIDTH(12)
    ) u_switch (
        .clk(clk), .rst(rst),
        .s_axis_tdata(sw_s_tdata), .s_axis_tkeep({NP*KW{1'b1}}),
        .s_axis_tvalid(sw_s_tvalid), .s_axis_tready(sw_s_tready),
        .s_axis_tlast(sw_s_tlast),
        .m_axis_tdata(sw_m_tdata), .m_axis_tkeep(sw_m_tkeep),
        .m_axis_tvalid(sw_m_tvalid), .m_axis_tready(sw_m_tready),
        .m_axis_tlast(sw_m_tlast),
        .s_axil_awaddr(l_awaddr[0 +: 12]), .s_axil_awprot(l_awprot[0 +: 3]),
        .s_axil_awvalid(l_awvalid[0]), .s_axil_awready(l_awready[0]),
        .s_axil_wdata(l_wdata[0 +: 32]), .s_axil_wstrb(l_wstrb[0 +: 4]),
        .s_axil_wvalid(l_wvalid[0]), .s_axil_wready(l_wready[0]),
        .s_axil_bresp(l_bresp[0 +: 2]), .s_axil_bvalid(l_bvalid[0]),
        .s_axil_bready(l_bready[0]),
        .s_axil_araddr(l_araddr[0 +: 12]), .s_axil_arprot(l_arprot[0 +: 3]),
        .s_axil_arvalid(l_arvalid[0]), .s_axil_arready(l_arready[0]),
        .s_axil_rdata(l_rdata[0 +: 32]), .s_axil_rresp(l_rresp[0 +: 2]),
        .s_axil_rvalid(l_rvalid[0]), .s_axil_rready(l_rready[0])
    );

    // ---------------- slots ----------------
    genvar k;
    generate
        for (k = 0; k < NUM_SLOTS; k = k + 1) begin : g_slot
            localparam P = k + 1;   // switch port and AXI-Lite target of slot k

            wire       decouple, decouple_status, rp_idle, rm_reset, rm_in_reset;
            wire [7:0] rm_select, rm_active;

            wire [DW-1:0] rp_in_tdata, rp_out_tdata;
            wire          rp_in_tvalid, rp_in_tready, rp_in_tlast;
            wire          rp_out_tvalid, rp_out_tready, rp_out_tlast;

            slot_ctrl #(.ADDR_WIDTH(12), .NUM_RMS(NUM_RMS), .DEFAULT_RM(DEFAULT_RM)) u_ctrl (
                .clk(clk), .rst(rst),
                .s_axil_awaddr(l_awaddr[P*AW +: 12]), .s_axil_awprot(l_awprot[P*3 +: 3]),
                .s_axil_awvalid(l_awvalid[P]), .s_axil_awready(l_awready[P]),
                .s_axil_wdata(l_wdata[P*32 +: 32]), .s_axil_wstrb(l_wstrb[P*4 +: 4]),
                .s_axil_wvalid(l_wvalid[P]), .s_axil_wready(l_wready[P]),
                .s_axil_bresp(l_bresp[P*2 +: 2]), .s_axil_bvalid(l_bvalid[P]),
                .s_axil_bready(l_bready[P]),
                .s_axil_araddr(l_araddr[P*AW +: 12]), .s_axil_arprot(l_arprot[P*3 +: 3]),
                .s_axil_arvalid(l_arvalid[P]), .s_axil_arready(l_arready[P]),
                .s_axil_rdata(l_rdata[P*32 +: 32]), .s_axil_rresp(l_rresp[P*2 +: 2]),
                .s_axil_rvalid(l_rvalid[P]), .s_axil_rready(l_rready[P]),
                .decouple(decouple), .decouple_status(decouple_status), .rp_idle(rp_idle),
                .rm_select(rm_select), .rm_reset(rm_reset),
                .rm_active(rm_active), .rm_in_reset(rm_in_reset)
            );

            dfx_decoupler #(.DATA_WIDTH(DW)) u_decoupler (
                .clk(clk), .rst(rst),
                .decouple(decouple), .decouple_status(decouple_status),
                .rp_idle(rp_idle), .rp_reset(rm_in_reset),
                .s_axis_tdata(sw_m_tdata[P*DW +: DW]), .s_axis_tvalid(sw_m_tvalid[P]),
                .s_axis_tready(sw_m_tready[P]), .s_axis_tlast(sw_m_tlast[P]),
                .rp_m_axis_tdata(rp_in_tdata), .rp_m_axis_tvalid(rp_in_tvalid),
                .rp_m_axis_tready(rp_in_tready), .rp_m_axis_tlast(rp_in_tlast),
                .rp_s_axis_tdata(rp_out_tdata), .rp_s_axis_tvalid(rp_out_tvalid),
                .rp_s_axis_tready(rp_out_tready), .rp_s_axis_tlast(rp_out_tlast),
                .m_axis_tdata(sw_s_tdata[P*DW +: DW]), .m_axis_tvalid(sw_s_tvalid[P]),
                .m_axis_tready(sw_s_tready[P]), .m_axis_tlast(sw_s_tlast[P])
            );

            rm_slot #(
                .DATA_WIDTH(DW), .NUM_RMS(NUM_RMS), .SEL_WIDTH(8),
                .RESET_CYCLES(RESET_CYCLES), .SLOT_INDEX(k)
            ) u_slot (
                .clk(clk), .rst(rst),
                .rm_select(rm_select), .rm_reset(rm_reset),
                .rm_active(rm_active), .rm_in_reset(rm_in_reset),
                .s_axis_tdata(rp_in_tdata), .s_axis_tvalid(rp_in_tvalid),
                .s_axis_tready(rp_in_tready), .s_axis_tlast(rp_in_tlast),
                .m_axis_tdata(rp_out_tdata), .m_axis_tvalid(rp_out_tvalid),
                .m_axis_tready(rp_out_tready), .m_axis_tlast(rp_out_tlast)
            );
        end
    endgenerate
endmodule
`default_nettype wire
