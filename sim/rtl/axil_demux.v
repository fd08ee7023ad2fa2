// axil_demux: one AXI4-Lite slave port to N_TARGETS AXI4-Lite master ports,
// decoded by an explicit list of target base addresses: target t answers in
// the 2**WINDOW_BITS-byte window at TARGET_ADDRS[t*ADDR_WIDTH +: ADDR_WIDTH]
// (its low WINDOW_BITS bits are ignored, so every window is aligned), so a
// target can sit at any aligned address, in any order.  An address in no
// window gets DECERR (reads return 0); if windows overlap, the lowest-
// numbered target wins.  One write and one read in flight at a time; the
// full address goes to every target, only VALIDs are steered.
//
// Mutation hook (testing only): `define MUTANT_DEMUX_DEFAULT_TARGET sends an
// address in no window to target 0 instead of answering DECERR (a decoder
// with a default slave: gaps in the map would alias a block).
`default_nettype none
module axil_demux #(
    parameter ADDR_WIDTH  = 16,
    parameter WINDOW_BITS = 12,
    parameter N_TARGETS   = 3,
    // no useful default (every target at 0): the parent sets it
    parameter [N_TARGETS*ADDR_WIDTH-1:0] TARGET_ADDRS = {N_TARGETS*ADDR_WIDTH{1'b0}}
) (
    input  wire                            clk,
    input  wire                            rst,

    input  wire [ADDR_WIDTH-1:0]           s_axil_awaddr,
    input  wire [2:0]                      s_axil_awprot,
    input  wire                            s_axil_awvalid,
    output wire                            s_axil_awready,
    input  wire [31:0]                     s_axil_wdata,
    input  wire [3:0]                      s_axil_wstrb,
    input  wire                            s_axil_wvalid,
    output wire                            s_axil_wready,
    output wire [1:0]                      s_axil_bresp,
    output wire                            s_axil_bvalid,
    input  wire                            s_axil_bready,
    input  wire [ADDR_WIDTH-1:0]           s_axil_araddr,
    input  wire [2:0]                      s_axil_arprot,
    input  wire                            s_axil_arvalid,
    output wire                            s_axil_arready,
    output wire [31:0]                     s_axil_rdata,
    output wire [1:0]                      s_axil_rresp,
    output wire                            s_axil_rvalid,
    input  wire                            s_axil_rready,

    output wire [N_TARGETS*ADDR_WIDTH-1:0] m_axil_awaddr,
    output wire [N_TARGETS*3-1:0]          m_axil_awprot,
    output wire [N_TARGETS-1:0]            m_axil_awvalid,
    input  wire [N_TARGETS-1:0]            m_axil_awready,
    output wire [N_TARGETS*32-1:0]         m_axil_wdata,
    output wire [N_TARGETS*4-1:0]          m_axil_wstrb,
    output wire [N_TARGETS-1:0]            m_axil_wvalid,
    input  wire [N_TARGETS-1:0]            m_axil_wready,
    input  wire [N_TARGETS*2-1:0]          m_axil_bresp,
    input  wire [N_TARGETS-1:0]            m_axil_bvalid,
    output wire [N_TARGETS-1:0]            m_axil_bready,
    output wire [N_TARGETS*ADDR_WIDTH-1:0] m_axil_araddr,
    output wire [N_TARGETS*3-1:0]          m_axil_arprot,
    output wire [N_TARGETS-1:0]            m_axil_arvalid,
    input  wire [N_TARGETS-1:0]            m_axil_arready,
    input  wire [N_TARGETS*32-1:0]         m_axil_rdata,
    input  wire [N_TARGETS*2-1:0]          m_axil_rresp,
    input  wire [N_TARGETS-1:0]            m_axil_rvalid,
    output wire [N_TARGETS-1:0]            m_axil_rready
);
    localparam IW = (N_TARGETS > 1) ? $clog2(N_TARGETS) : 1;
    localparam [1:0] DECERR = 2'b11;
    // the target whose window holds addr; hit = 0 when none does
    function [IW:0] decode;  // {hit, index}
        input [ADDR_WIDTH-1:0] addr;
        integer i;
        reg [ADDR_WIDTH-1:0] base;
        begin
`ifdef MUTANT_DEMUX_DEFAULT_TARGET
            decode = {1'b1, {IW{1'b0}}};
`else
            decode = {1'b0, {IW{1'b0}}};
`endif
            for (i = N_TARGETS - 1; i >= 0; i = i - 1) begin
                base = TARGET_ADDRS[i*ADDR_WIDTH +: ADDR_WIDTH];
                if (addr[ADDR_WIDTH-1:WINDOW_BITS] == base[ADDR_WIDTH-1:WINDOW_BITS])
                    decode = {1'b1, i[IW-1:0]};
            end
        end
    endfunction

    wire [IW:0] aw_dec = decode(s_axil_awaddr);
    wire [IW:0] ar_dec = decode(s_axil_araddr);

    // ---------------- write ----------------
    reg          w_busy, w_err, aw_done, w_done;
    reg [IW-1:0] w_idx;   // only used when !w_err

    wire aw_ok = w_busy && !aw_done && (w_err || m_axil_awready[w_idx]);
    wire w_ok  = w_busy && !w_done  && (w_err || m_axil_wready[w_idx]);
    assign s_axil_awready = aw_ok;
    assign s_axil_wready  = w_ok;
    assign s_axil_bvalid  = w_busy && (w_err ? (aw_done && w_done) : m_axil_bvalid[w_idx]);
    assign s_axil_bresp   = w_err ? DECERR : m_axil_bresp[w_idx*2 +: 2];

    // ---------------- read ----------------
    reg          r_busy, r_err, ar_done;
    reg [IW-1:0] r_idx;   // only used when !r_err

    wire ar_ok = r_busy && !ar_done && (r_err || m_axil_arready[r_idx]);
    assign s_axil_arready = ar_ok;
    assign s_axil_rvalid  = r_busy && (r_err ? ar_done : m_axil_rvalid[r_idx]);
    assign s_axil_rresp   = r_err ? DECERR : m_axil_rresp[r_idx*2 +: 2];
    assign s_axil_rdata   = r_err ? 32'd0 : m_axil_rdata[r_idx*32 +: 32];

    genvar t;
    generate
        for (t = 0; t < N_TARGETS; t = t + 1) begin : g_t
            wire wsel = w_busy && !w_err && ({{(32-IW){1'b0}}, w_idx} == t);
            wire rsel = r_busy && !r_err && ({{(32-IW){1'b0}}, r_idx} == t);
            assign m_axil_awaddr[t*ADDR_WIDTH +: ADDR_WIDTH] = s_axil_awaddr;
            assign m_axil_awprot[t*3 +: 3] = s_axil_awprot;
            assign m_axil_awvalid[t]       = wsel && !aw_done && s_axil_awvalid;
            assign m_axil_wdata[t*32 +: 32] = s_axil_wdata;
            assign m_axil_wstrb[t*4 +: 4]  = s_axil_wstrb;
            assign m_axil_wvalid[t]        = wsel && !w_done && s_axil_wvalid;
            assign m_axil_bready[t]        = wsel && s_axil_bready;
            assign m_axil_araddr[t*ADDR_WIDTH +: ADDR_WIDTH] = s_axil_araddr;
            assign m_axil_arprot[t*3 +: 3] = s_axil_arprot;
            assign m_axil_arvalid[t]       = rsel && !ar_done && s_axil_arvalid;
            assign m_axil_rready[t]        = rsel && s_axil_rready;
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            w_busy <= 1'b0; w_err <= 1'b0; aw_done <= 1'b0; w_done <= 1'b0;
            w_idx  <= {IW{1'b0}};
            r_busy <= 1'b0; r_err <= 1'b0; ar_done <= 1'b0;
            r_idx  <= {IW{1'b0}};
        end else begin
            // write: latch the target from AWADDR, then forward AW and W
            if (!w_busy) begin
                if (s_axil_awvalid) begin
                    w_busy  <= 1'b1;
                    w_idx   <= aw_dec[IW-1:0];
                    w_err   <= !aw_dec[IW];
                    aw_done <= 1'b0;
                    w_done  <= 1'b0;
                end
            end else begin
                if (s_axil_awvalid && aw_ok) aw_done <= 1'b1;
                if (s_axil_wvalid && w_ok)   w_done  <= 1'b1;
                if (s_axil_bvalid && s_axil_bready) w_busy <= 1'b0;
            end
            // read
            if (!r_busy) begin
                if (s_axil_arvalid) begin
                    r_busy  <= 1'b1;
                    r_idx   <= ar_dec[IW-1:0];
                    r_err   <= !ar_dec[IW];
                    ar_done <= 1'b0;
                end
            end else begin
                if (s_axil_arvalid && ar_ok) ar_done <= 1'b1;
                if (s_axil_rvalid && s_axil_rready) r_busy <= 1'b0;
            end
        end
    end
endmodule
`default_nettype wire
