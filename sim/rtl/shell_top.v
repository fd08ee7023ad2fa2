// shell_top: the static shell for RTL simulation.
//
//   DMA MM2S --s_axis--> [switch slave 0]
//   [switch master 0] --m_axis--> DMA S2MM
//   [switch master 1+k] -> dfx_decoupler k -> rm_slot k -> dfx_decoupler k
//                                                      -> [switch slave 1+k]
//   slot_ctrl k monitors the handshakes between dfx_decoupler k and rm_slot k;
//   rm_info k reports the identity of the RM rm_slot k holds.
//
// AXI4-Lite (s_axil, ADDR_WIDTH = 18 bits): every block its own 4 KiB window,
// by default the layout hwpart builds (hwpart.board.regs.shell_map(0, NUM_SLOTS)):
//   SWITCH_ADDR          0x0_0000            axis_switch (PG085: 0x00 CTRL,
//                                            0x40 + 4*i MI_MUX for master i)
//   DECOUPLER_ADDRS[k]   0x0_1000 * (1+k)    dfx_decoupler k (PG375 with
//                                            HAS_AXI_LITE: one register at 0x0)
//   (0x1_0000: the AXI DMA on a board; not in this RTL)
//   SLOT_CTRL_ADDRS[k]   0x2_0000 + 0x1000*k slot_ctrl k (SLOT_ID, STATUS,
//                                            RM_SELECT, RM_RESET, RM_ACTIVE, NUM_RMS)
//   RM_INFO_ADDRS[k]     0x3_0000 + 0x1000*k rm_info k (magic, rm_id, n_in, n_out)
//   anything else        DECERR, reads 0
// Every address is a parameter (32 bits per slot, slot k in [32*k +: 32]), so
// any layout a .hwh describes can be built; each must be 4 KiB aligned, below
// 2**ADDR_WIDTH and distinct (checked at elaboration).
// Switch ports: slave 0 = DMA MM2S, slave 1+k = slot k output;
//               master 0 = DMA S2MM, master 1+k = slot k input.
// After reset every switch master is disabled, every slot is coupled and
// holds RM DEFAULT_RM.
//
// RM identities (rm_info): RM_IDS / RM_N_IN / RM_N_OUT, 32 bits per RM of the
// bank (RM r in [32*r +: 32]); every slot holds the same bank.  The defaults
// are the example bank's (rm_bank.v): RM 0 rm_add_const, RM 1 rm_invert, each
// one byte in, one byte out (they work byte by byte).  The ids are
// hwpart.board.regs.rm_id(name), i.e. the first 4 bytes of sha256(name)
// little-endian, computed in Python:
//   rm_id("rm_add_const") = 0x44EB_C95D, rm_id("rm_invert") = 0xCD38_3BAF
`default_nettype none
module shell_top #(
    parameter NUM_SLOTS    = 2,
    parameter DATA_WIDTH   = 32,
    parameter NUM_RMS      = 2,
    parameter RESET_CYCLES = 4,
    parameter [7:0] DEFAULT_RM = 8'd0,
    parameter ADDR_WIDTH   = 18,
    parameter [31:0] SWITCH_ADDR = 32'h0_0000,
    parameter [32*NUM_SLOTS-1:0] DECOUPLER_ADDRS = slot_addrs(32'h0_1000),
    parameter [32*NUM_SLOTS-1:0] SLOT_CTRL_ADDRS = slot_addrs(32'h2_0000),
    parameter [32*NUM_SLOTS-1:0] RM_INFO_ADDRS   = slot_addrs(32'h3_0000),
    parameter [32*NUM_RMS-1:0] RM_IDS   = {32'hCD38_3BAF, 32'h44EB_C95D},
    parameter [32*NUM_RMS-1:0] RM_N_IN  = {32'd1, 32'd1},
    parameter [32*NUM_RMS-1:0] RM_N_OUT = {32'd1, 32'd1}
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

    input  wire [ADDR_WIDTH-1:0] s_axil_awaddr,
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
    input  wire [ADDR_WIDTH-1:0] s_axil_araddr,
    input  wire [2:0]            s_axil_arprot,
    input  wire                  s_axil_arvalid,
    output wire                  s_axil_arready,
    output wire [31:0]           s_axil_rdata,
    output wire [1:0]            s_axil_rresp,
    output wire                  s_axil_rvalid,
    input  wire                  s_axil_rready
);
    // the default per-slot layout: slot k at first + 0x1000 * k
    function [32*NUM_SLOTS-1:0] slot_addrs;
        input [31:0] first;
        integer k;
        begin
            for (k = 0; k < NUM_SLOTS; k = k + 1)
                slot_addrs[32*k +: 32] = first + 32'h1000 * k;
        end
    endfunction

    localparam NP = NUM_SLOTS + 1;       // switch ports each way
    localparam NT = 1 + 3 * NUM_SLOTS;   // AXI-Lite targets
    localparam AW = ADDR_WIDTH;
    localparam DW = DATA_WIDTH;
    localparam KW = (DATA_WIDTH + 7) / 8;
    localparam WB = 12;                  // 4 KiB windows

    // target t's address: 0 switch, 1+k decoupler k, 1+N+k slot_ctrl k, 1+2N+k rm_info k
    function [31:0] target_addr;
        input integer t;
        begin
            if (t == 0)
                target_addr = SWITCH_ADDR;
            else if (t <= NUM_SLOTS)
                target_addr = DECOUPLER_ADDRS[32*(t-1) +: 32];
            else if (t <= 2 * NUM_SLOTS)
                target_addr = SLOT_CTRL_ADDRS[32*(t-1-NUM_SLOTS) +: 32];
            else
                target_addr = RM_INFO_ADDRS[32*(t-1-2*NUM_SLOTS) +: 32];
        end
    endfunction

    function [NT*AW-1:0] target_addrs;
        input dummy;
        integer t;
        reg [31:0] a;
        begin
            for (t = 0; t < NT; t = t + 1) begin
                a = target_addr(t);
                target_addrs[t*AW +: AW] = a[AW-1:0];
            end
        end
    endfunction

    // 1 when every window is aligned, inside the address space and distinct
    function map_ok;
        input dummy;
        integer t, u;
        reg [31:0] a;
        begin
            map_ok = 1'b1;
            for (t = 0; t < NT; t = t + 1) begin
                a = target_addr(t);
                if (a[WB-1:0] != 0 || (AW < 32 && (a >> AW) != 0))
                    map_ok = 1'b0;
                for (u = 0; u < t; u = u + 1)
                    if (target_addr(u) == a)
                        map_ok = 1'b0;
            end
        end
    endfunction

    localparam [NT*AW-1:0] TARGET_ADDRS = target_addrs(1'b0);
    localparam             MAP_OK       = map_ok(1'b0);

    generate
        if (!MAP_OK) begin : g_bad_map
            initial begin
                $display("shell_top: bad address map: each block needs its own 4 KiB window below 2**%0d",
                         ADDR_WIDTH);
                $finish;
            end
        end
    endgenerate

    // ---------------- AXI-Lite demux ----------------
    wire [NT*AW-1:0] l_awaddr, l_araddr;
    wire [NT*3-1:0]  l_awprot, l_arprot;
    wire [NT-1:0]    l_awvalid, l_awready, l_wvalid, l_wready, l_bvalid, l_bready;
    wire [NT-1:0]    l_arvalid, l_arready, l_rvalid, l_rready;
    wire [NT*32-1:0] l_wdata, l_rdata;
    wire [NT*4-1:0]  l_wstrb;
    wire [NT*2-1:0]  l_bresp, l_rresp;

    axil_demux #(.ADDR_WIDTH(AW), .WINDOW_BITS(WB), .N_TARGETS(NT),
                 .TARGET_ADDRS(TARGET_ADDRS)) u_demux (
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
        .AXIL_ADDR_WIDTH(WB)
    ) u_switch (
        .clk(clk), .rst(rst),
        .s_axis_tdata(sw_s_tdata), .s_axis_tkeep({NP*KW{1'b1}}),
        .s_axis_tvalid(sw_s_tvalid), .s_axis_tready(sw_s_tready),
        .s_axis_tlast(sw_s_tlast),
        .m_axis_tdata(sw_m_tdata), .m_axis_tkeep(sw_m_tkeep),
        .m_axis_tvalid(sw_m_tvalid), .m_axis_tready(sw_m_tready),
        .m_axis_tlast(sw_m_tlast),
        .s_axil_awaddr(l_awaddr[0 +: WB]), .s_axil_awprot(l_awprot[0 +: 3]),
        .s_axil_awvalid(l_awvalid[0]), .s_axil_awready(l_awready[0]),
        .s_axil_wdata(l_wdata[0 +: 32]), .s_axil_wstrb(l_wstrb[0 +: 4]),
        .s_axil_wvalid(l_wvalid[0]), .s_axil_wready(l_wready[0]),
        .s_axil_bresp(l_bresp[0 +: 2]), .s_axil_bvalid(l_bvalid[0]),
        .s_axil_bready(l_bready[0]),
        .s_axil_araddr(l_araddr[0 +: WB]), .s_axil_arprot(l_arprot[0 +: 3]),
        .s_axil_arvalid(l_arvalid[0]), .s_axil_arready(l_arready[0]),
        .s_axil_rdata(l_rdata[0 +: 32]), .s_axil_rresp(l_rresp[0 +: 2]),
        .s_axil_rvalid(l_rvalid[0]), .s_axil_rready(l_rready[0])
    );

    // ---------------- slots ----------------
    genvar k;
    generate
        for (k = 0; k < NUM_SLOTS; k = k + 1) begin : g_slot
            localparam P  = k + 1;                   // switch port of slot k
            localparam TD = 1 + k;                   // AXI-Lite targets of slot k
            localparam TC = 1 + NUM_SLOTS + k;
            localparam TI = 1 + 2 * NUM_SLOTS + k;

            wire       decouple_status, rm_reset, rm_in_reset;
            wire [7:0] rm_select, rm_active;

            wire [DW-1:0] rp_in_tdata, rp_out_tdata;
            wire          rp_in_tvalid, rp_in_tready, rp_in_tlast;
            wire          rp_out_tvalid, rp_out_tready, rp_out_tlast;

            dfx_decoupler #(.DATA_WIDTH(DW), .HAS_AXI_LITE(1), .ADDR_WIDTH(WB)) u_decoupler (
                .clk(clk), .rst(rst),
                .decouple(1'b0), .decouple_status(decouple_status),
                .s_axil_awaddr(l_awaddr[TD*AW +: WB]), .s_axil_awprot(l_awprot[TD*3 +: 3]),
                .s_axil_awvalid(l_awvalid[TD]), .s_axil_awready(l_awready[TD]),
                .s_axil_wdata(l_wdata[TD*32 +: 32]), .s_axil_wstrb(l_wstrb[TD*4 +: 4]),
                .s_axil_wvalid(l_wvalid[TD]), .s_axil_wready(l_wready[TD]),
                .s_axil_bresp(l_bresp[TD*2 +: 2]), .s_axil_bvalid(l_bvalid[TD]),
                .s_axil_bready(l_bready[TD]),
                .s_axil_araddr(l_araddr[TD*AW +: WB]), .s_axil_arprot(l_arprot[TD*3 +: 3]),
                .s_axil_arvalid(l_arvalid[TD]), .s_axil_arready(l_arready[TD]),
                .s_axil_rdata(l_rdata[TD*32 +: 32]), .s_axil_rresp(l_rresp[TD*2 +: 2]),
                .s_axil_rvalid(l_rvalid[TD]), .s_axil_rready(l_rready[TD]),
                .s_axis_tdata(sw_m_tdata[P*DW +: DW]), .s_axis_tvalid(sw_m_tvalid[P]),
                .s_axis_tready(sw_m_tready[P]), .s_axis_tlast(sw_m_tlast[P]),
                .rp_m_axis_tdata(rp_in_tdata), .rp_m_axis_tvalid(rp_in_tvalid),
                .rp_m_axis_tready(rp_in_tready), .rp_m_axis_tlast(rp_in_tlast),
                .rp_s_axis_tdata(rp_out_tdata), .rp_s_axis_tvalid(rp_out_tvalid),
                .rp_s_axis_tready(rp_out_tready), .rp_s_axis_tlast(rp_out_tlast),
                .m_axis_tdata(sw_s_tdata[P*DW +: DW]), .m_axis_tvalid(sw_s_tvalid[P]),
                .m_axis_tready(sw_s_tready[P]), .m_axis_tlast(sw_s_tlast[P])
            );

            slot_ctrl #(.ADDR_WIDTH(WB), .NUM_RMS(NUM_RMS), .DEFAULT_RM(DEFAULT_RM)) u_ctrl (
                .clk(clk), .rst(rst),
                .s_axil_awaddr(l_awaddr[TC*AW +: WB]), .s_axil_awprot(l_awprot[TC*3 +: 3]),
                .s_axil_awvalid(l_awvalid[TC]), .s_axil_awready(l_awready[TC]),
                .s_axil_wdata(l_wdata[TC*32 +: 32]), .s_axil_wstrb(l_wstrb[TC*4 +: 4]),
                .s_axil_wvalid(l_wvalid[TC]), .s_axil_wready(l_wready[TC]),
                .s_axil_bresp(l_bresp[TC*2 +: 2]), .s_axil_bvalid(l_bvalid[TC]),
                .s_axil_bready(l_bready[TC]),
                .s_axil_araddr(l_araddr[TC*AW +: WB]), .s_axil_arprot(l_arprot[TC*3 +: 3]),
                .s_axil_arvalid(l_arvalid[TC]), .s_axil_arready(l_arready[TC]),
                .s_axil_rdata(l_rdata[TC*32 +: 32]), .s_axil_rresp(l_rresp[TC*2 +: 2]),
                .s_axil_rvalid(l_rvalid[TC]), .s_axil_rready(l_rready[TC]),
                .decouple_status(decouple_status),
                .rm_select(rm_select), .rm_reset(rm_reset),
                .rm_active(rm_active), .rm_in_reset(rm_in_reset),
                .rp_in_tvalid(rp_in_tvalid), .rp_in_tready(rp_in_tready),
                .rp_in_tlast(rp_in_tlast),
                .rp_out_tvalid(rp_out_tvalid), .rp_out_tready(rp_out_tready),
                .rp_out_tlast(rp_out_tlast)
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

            rm_info #(
                .ADDR_WIDTH(WB), .NUM_RMS(NUM_RMS),
                .RM_IDS(RM_IDS), .RM_N_IN(RM_N_IN), .RM_N_OUT(RM_N_OUT)
            ) u_rm_info (
                .clk(clk), .rst(rst),
                .s_axil_awaddr(l_awaddr[TI*AW +: WB]), .s_axil_awprot(l_awprot[TI*3 +: 3]),
                .s_axil_awvalid(l_awvalid[TI]), .s_axil_awready(l_awready[TI]),
                .s_axil_wdata(l_wdata[TI*32 +: 32]), .s_axil_wstrb(l_wstrb[TI*4 +: 4]),
                .s_axil_wvalid(l_wvalid[TI]), .s_axil_wready(l_wready[TI]),
                .s_axil_bresp(l_bresp[TI*2 +: 2]), .s_axil_bvalid(l_bvalid[TI]),
                .s_axil_bready(l_bready[TI]),
                .s_axil_araddr(l_araddr[TI*AW +: WB]), .s_axil_arprot(l_arprot[TI*3 +: 3]),
                .s_axil_arvalid(l_arvalid[TI]), .s_axil_arready(l_arready[TI]),
                .s_axil_rdata(l_rdata[TI*32 +: 32]), .s_axil_rresp(l_rresp[TI*2 +: 2]),
                .s_axil_rvalid(l_rvalid[TI]), .s_axil_rready(l_rready[TI]),
                .rm_active(rm_active)
            );
        end
    endgenerate
endmodule
`default_nettype wire
