// axis_switch: AXI4-Stream switch, S_COUNT slave ports x M_COUNT master ports,
// routed by AXI4-Lite registers compatible with Xilinx PG085
// (AXI4-Stream Switch, "control register routing" mode).
//
// Register map (byte addresses on s_axil):
//   0x00        CTRL     write bit 1 = commit the MI_MUX registers.
//                        Read: bit 1 = a committed update is still waiting
//                        for a packet boundary on some master port.
//   0x40 + 4*i  MI_MUX i bits [7:0] = slave index routed to master i,
//                        bit 31 = master i disabled.  Read returns the value
//                        programmed (not necessarily committed/active yet).
//                        Reset value 0x8000_0000 (disabled), as in PG085.
//   A slave index >= S_COUNT disables the master port as well.
//
// Routing rules
//   * MI_MUX writes do nothing until CTRL bit 1 is written (commit).
//   * A committed route is applied to master i only at a packet boundary:
//     while master i is mid-packet (a beat without TLAST has been accepted on
//     it) it keeps its current source until the TLAST beat has transferred.
//     A new route to a slave that is currently mid-packet towards another
//     master also waits for that packet's TLAST, so no packet is ever split.
//     A route equal to the active one is applied at once.
//   * If several enabled masters select the same slave, the lowest-numbered
//     master gets it; the others see TVALID=0 (no broadcast).
//   * A slave port that no master takes is back-pressured (TREADY=0): data is
//     never dropped.
//   * The data path is combinational (no register slices), so TREADY/TVALID
//     of a connected pair see each other in the same cycle.
//
// Mutation hook (testing only): `define MUTANT_SWITCH_MIDPACKET applies
// committed routes immediately, even mid-packet.
`default_nettype none
module axis_switch #(
    parameter S_COUNT         = 2,
    parameter M_COUNT         = 2,
    parameter DATA_WIDTH      = 32,
    parameter KEEP_ENABLE     = (DATA_WIDTH > 8),
    parameter KEEP_WIDTH      = (DATA_WIDTH + 7) / 8,
    parameter AXIL_ADDR_WIDTH = 8
) (
    input  wire                          clk,
    input  wire                          rst,

    input  wire [S_COUNT*DATA_WIDTH-1:0] s_axis_tdata,
    input  wire [S_COUNT*KEEP_WIDTH-1:0] s_axis_tkeep,
    input  wire [S_COUNT-1:0]            s_axis_tvalid,
    output reg  [S_COUNT-1:0]            s_axis_tready,
    input  wire [S_COUNT-1:0]            s_axis_tlast,

    output reg  [M_COUNT*DATA_WIDTH-1:0] m_axis_tdata,
    output reg  [M_COUNT*KEEP_WIDTH-1:0] m_axis_tkeep,
    output reg  [M_COUNT-1:0]            m_axis_tvalid,
    input  wire [M_COUNT-1:0]            m_axis_tready,
    output reg  [M_COUNT-1:0]            m_axis_tlast,

    input  wire [AXIL_ADDR_WIDTH-1:0]    s_axil_awaddr,
    input  wire [2:0]                    s_axil_awprot,
    input  wire                          s_axil_awvalid,
    output wire                          s_axil_awready,
    input  wire [31:0]                   s_axil_wdata,
    input  wire [3:0]                    s_axil_wstrb,
    input  wire                          s_axil_wvalid,
    output wire                          s_axil_wready,
    output wire [1:0]                    s_axil_bresp,
    output wire                          s_axil_bvalid,
    input  wire                          s_axil_bready,
    input  wire [AXIL_ADDR_WIDTH-1:0]    s_axil_araddr,
    input  wire [2:0]                    s_axil_arprot,
    input  wire                          s_axil_arvalid,
    output wire                          s_axil_arready,
    output wire [31:0]                   s_axil_rdata,
    output wire [1:0]                    s_axil_rresp,
    output wire                          s_axil_rvalid,
    input  wire                          s_axil_rready
);
    localparam SI_W = (S_COUNT > 1) ? $clog2(S_COUNT) : 1;
    localparam MI_W = (M_COUNT > 1) ? $clog2(M_COUNT) : 1;

    // ------------------------------------------------------------------
    // register interface
    // ------------------------------------------------------------------
    wire                       reg_wr_en, reg_rd_en;
    wire [AXIL_ADDR_WIDTH-1:0] reg_wr_addr, reg_rd_addr;
    wire [31:0]                reg_wr_data;
    wire [3:0]                 reg_wr_strb;
    reg  [31:0]                reg_rd_data;

    axil_reg_if #(.ADDR_WIDTH(AXIL_ADDR_WIDTH)) u_regs (
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
        .reg_wr_en(reg_wr_en), .reg_wr_addr(reg_wr_addr),
        .reg_wr_data(reg_wr_data), .reg_wr_strb(reg_wr_strb),
        .reg_rd_en(reg_rd_en), .reg_rd_addr(reg_rd_addr),
        .reg_rd_data(reg_rd_data)
    );

    // programmed (shadow) values, committed values, active routes
    reg [M_COUNT*8-1:0]    shadow_sel;
    reg [M_COUNT-1:0]      shadow_dis;
    reg [M_COUNT*8-1:0]    commit_sel;
    reg [M_COUNT-1:0]      commit_dis;
    reg [M_COUNT-1:0]      pending;
    reg [M_COUNT*SI_W-1:0] route_sel;
    reg [M_COUNT-1:0]      route_en;

    // packet state
    reg [M_COUNT-1:0]      m_in_pkt;
    reg [S_COUNT-1:0]      s_in_pkt;

    // which master (if any) owns each slave
    reg [S_COUNT-1:0]      owned;
    reg [S_COUNT*MI_W-1:0] owner;
    reg [M_COUNT-1:0]      grant;

    integer i0, i1, i2, i3, j1, j2;
    wire [31:0] rd_word = {{(34-AXIL_ADDR_WIDTH){1'b0}}, reg_rd_addr[AXIL_ADDR_WIDTH-1:2]};
    wire [31:0] wr_word = {{(34-AXIL_ADDR_WIDTH){1'b0}}, reg_wr_addr[AXIL_ADDR_WIDTH-1:2]};
    reg [SI_W-1:0] sel;
    reg [MI_W-1:0] own;

    // read mux
    always @* begin
        reg_rd_data = 32'd0;
        if (rd_word == 32'd0) begin
            reg_rd_data[1] = |pending;
        end
        for (i0 = 0; i0 < M_COUNT; i0 = i0 + 1) begin
            if (rd_word == 32'd16 + i0) begin
                reg_rd_data[7:0] = shadow_sel[i0*8 +: 8];
                reg_rd_data[31]  = shadow_dis[i0];
            end
        end
    end

    // ------------------------------------------------------------------
    // data path
    // ------------------------------------------------------------------
    always @* begin
        owned = {S_COUNT{1'b0}};
        owner = {S_COUNT*MI_W{1'b0}};
        for (j1 = 0; j1 < S_COUNT; j1 = j1 + 1) begin
            for (i1 = M_COUNT - 1; i1 >= 0; i1 = i1 - 1) begin
                if (route_en[i1] && route_sel[i1*SI_W +: SI_W] == j1[SI_W-1:0]) begin
                    owned[j1] = 1'b1;
                    owner[j1*MI_W +: MI_W] = i1[MI_W-1:0];
                end
            end
        end

        for (i1 = 0; i1 < M_COUNT; i1 = i1 + 1) begin
            sel = route_sel[i1*SI_W +: SI_W];
            grant[i1] = route_en[i1] && (owner[sel*MI_W +: MI_W] == i1[MI_W-1:0]);
            m_axis_tvalid[i1] = grant[i1] && s_axis_tvalid[sel];
            m_axis_tlast[i1]  = grant[i1] && s_axis_tlast[sel];
            m_axis_tdata[i1*DATA_WIDTH +: DATA_WIDTH] =
                grant[i1] ? s_axis_tdata[sel*DATA_WIDTH +: DATA_WIDTH] : {DATA_WIDTH{1'b0}};
            if (KEEP_ENABLE)
                m_axis_tkeep[i1*KEEP_WIDTH +: KEEP_WIDTH] =
                    grant[i1] ? s_axis_tkeep[sel*KEEP_WIDTH +: KEEP_WIDTH] : {KEEP_WIDTH{1'b0}};
            else
                m_axis_tkeep[i1*KEEP_WIDTH +: KEEP_WIDTH] = {KEEP_WIDTH{1'b1}};
        end

        for (j1 = 0; j1 < S_COUNT; j1 = j1 + 1) begin
            own = owner[j1*MI_W +: MI_W];
            s_axis_tready[j1] = owned[j1] && m_axis_tready[own];
        end
    end

    // ------------------------------------------------------------------
    // route update at packet boundaries
    // ------------------------------------------------------------------
    reg [M_COUNT-1:0] m_in_pkt_next;
    reg [S_COUNT-1:0] s_in_pkt_next;
    reg [M_COUNT-1:0] new_en;
    reg [M_COUNT*SI_W-1:0] new_sel;
    reg [M_COUNT-1:0] apply;
    reg [SI_W-1:0] nsel;

    always @* begin
        for (i2 = 0; i2 < M_COUNT; i2 = i2 + 1)
            m_in_pkt_next[i2] = (m_axis_tvalid[i2] && m_axis_tready[i2]) ? !m_axis_tlast[i2] : m_in_pkt[i2];
        for (j2 = 0; j2 < S_COUNT; j2 = j2 + 1)
            s_in_pkt_next[j2] = (s_axis_tvalid[j2] && s_axis_tready[j2]) ? !s_axis_tlast[j2] : s_in_pkt[j2];
        for (i2 = 0; i2 < M_COUNT; i2 = i2 + 1) begin
            new_en[i2] = !commit_dis[i2] && ({24'd0, commit_sel[i2*8 +: 8]} < S_COUNT);
            nsel = commit_sel[i2*8 +: SI_W];
            new_sel[i2*SI_W +: SI_W] = nsel;
`ifdef MUTANT_SWITCH_MIDPACKET
            apply[i2] = pending[i2];
`else
            apply[i2] = pending[i2] && (
                ((new_en[i2] == route_en[i2]) && (!new_en[i2] || nsel == route_sel[i2*SI_W +: SI_W])) ||
                (!m_in_pkt_next[i2] && !(new_en[i2] && s_in_pkt_next[nsel])));
`endif
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            shadow_sel <= {M_COUNT*8{1'b0}};
            shadow_dis <= {M_COUNT{1'b1}};
            commit_sel <= {M_COUNT*8{1'b0}};
            commit_dis <= {M_COUNT{1'b1}};
            pending    <= {M_COUNT{1'b0}};
            route_sel  <= {M_COUNT*SI_W{1'b0}};
            route_en   <= {M_COUNT{1'b0}};
            m_in_pkt   <= {M_COUNT{1'b0}};
            s_in_pkt   <= {S_COUNT{1'b0}};
        end else begin
            m_in_pkt <= m_in_pkt_next;
            s_in_pkt <= s_in_pkt_next;

            for (i3 = 0; i3 < M_COUNT; i3 = i3 + 1) begin
                if (apply[i3]) begin
                    route_en[i3] <= new_en[i3];
                    route_sel[i3*SI_W +: SI_W] <= new_sel[i3*SI_W +: SI_W];
                    pending[i3] <= 1'b0;
                end
            end

            if (reg_wr_en) begin
                if (wr_word == 32'd0) begin
                    if (reg_wr_strb[0] && reg_wr_data[1]) begin
                        commit_sel <= shadow_sel;
                        commit_dis <= shadow_dis;
                        pending    <= {M_COUNT{1'b1}};
                    end
                end
                for (i3 = 0; i3 < M_COUNT; i3 = i3 + 1) begin
                    if (wr_word == 32'd16 + i3) begin
                        if (reg_wr_strb[0]) shadow_sel[i3*8 +: 8] <= reg_wr_data[7:0];
                        if (reg_wr_strb[3]) shadow_dis[i3] <= reg_wr_data[31];
                    end
                end
            end
        end
    end
endmodule
`default_nettype wire
