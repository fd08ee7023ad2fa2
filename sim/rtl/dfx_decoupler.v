// dfx_decoupler: DFX decoupler for one AXI4-Stream into and one AXI4-Stream
// out of a reconfigurable partition (RP), in the spirit of Xilinx PG375.
//
//   static side                      RP side
//   s_axis  (switch -> decoupler) -> rp_m_axis (decoupler -> RM input)
//   m_axis  (decoupler -> switch) <- rp_s_axis (RM output -> decoupler)
//
// Control is a plain input port `decouple` (the shell drives it from the
// slot control register, see shell_top.v / sim/README.md).
//
// Behaviour ("packet-safe" decoupling; PG375 itself decouples at once):
//   * decouple=1 is a request.  The input direction closes as soon as it is
//     not mid-packet (at once if idle, otherwise right after the TLAST beat
//     of the packet being accepted).  The output direction stays open until
//     the RP has emitted the last beat of every packet it accepted (one
//     output packet per input packet), then closes.  So decoupling never
//     chops a packet on the static side and never strands accepted data in
//     the RP.
//   * Closed means: TVALID and TREADY towards the static side are 0, and
//     TVALID and TREADY towards the RP are 0 too (nothing is accepted or
//     emitted on either side, so a half-configured RP cannot inject or eat
//     beats).
//   * decouple_status = 1 when both directions are closed and the RP holds
//     no data: the RP may now be reconfigured/reset.  Software writes
//     decouple, polls decouple_status, swaps, resets, then clears decouple.
//   * rp_idle = no partial input packet, no partial output packet, and as
//     many output packets as input packets (valid whether decoupled or not).
//   * rp_reset (the RM's reset) clears the packet tracking, since a reset RP
//     holds nothing.
//
// Mutation hooks (testing only): `define MUTANT_DECOUPLER_PASSTHROUGH keeps
// both directions open while decoupled (decouple_status still reports 1);
// `define MUTANT_DECOUPLER_IGNORE_HELD reports the RP idle although it still
// holds complete packets whose output has not started.
`default_nettype none
module dfx_decoupler #(
    parameter DATA_WIDTH = 32,
    parameter CNT_WIDTH  = 8
) (
    input  wire                  clk,
    input  wire                  rst,

    input  wire                  decouple,
    output wire                  decouple_status,
    output wire                  rp_idle,
    input  wire                  rp_reset,

    // static side, into the RP
    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    // RP side, into the RM
    output wire [DATA_WIDTH-1:0] rp_m_axis_tdata,
    output wire                  rp_m_axis_tvalid,
    input  wire                  rp_m_axis_tready,
    output wire                  rp_m_axis_tlast,
    // RP side, out of the RM
    input  wire [DATA_WIDTH-1:0] rp_s_axis_tdata,
    input  wire                  rp_s_axis_tvalid,
    output wire                  rp_s_axis_tready,
    input  wire                  rp_s_axis_tlast,
    // static side, out of the RP
    output wire [DATA_WIDTH-1:0] m_axis_tdata,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast
);
    reg                 in_pkt;       // input packet partially accepted
    reg                 out_pkt;      // output packet partially emitted
    reg [CNT_WIDTH-1:0] outstanding;  // input packets complete - output packets complete

`ifdef MUTANT_DECOUPLER_IGNORE_HELD
    assign rp_idle = !in_pkt && !out_pkt;
`else
    assign rp_idle = !in_pkt && !out_pkt && (outstanding == {CNT_WIDTH{1'b0}});
`endif

`ifdef MUTANT_DECOUPLER_PASSTHROUGH
    wire gate_in  = 1'b0;
    wire gate_out = 1'b0;
`else
    wire gate_in  = decouple && !in_pkt;
    wire gate_out = decouple && rp_idle;
`endif

    assign decouple_status = decouple && rp_idle;

    assign rp_m_axis_tdata  = s_axis_tdata;
    assign rp_m_axis_tlast  = s_axis_tlast;
    assign rp_m_axis_tvalid = s_axis_tvalid && !gate_in;
    assign s_axis_tready    = rp_m_axis_tready && !gate_in;

    assign m_axis_tdata     = rp_s_axis_tdata;
    assign m_axis_tlast     = rp_s_axis_tlast;
    assign m_axis_tvalid    = rp_s_axis_tvalid && !gate_out;
    assign rp_s_axis_tready = m_axis_tready && !gate_out;

    wire in_xfer  = s_axis_tvalid && s_axis_tready;
    wire out_xfer = m_axis_tvalid && m_axis_tready;
    wire in_done  = in_xfer && s_axis_tlast;
    wire out_done = out_xfer && m_axis_tlast;

    always @(posedge clk) begin
        if (rst || rp_reset) begin
            in_pkt      <= 1'b0;
            out_pkt     <= 1'b0;
            outstanding <= {CNT_WIDTH{1'b0}};
        end else begin
            if (in_xfer)  in_pkt  <= !s_axis_tlast;
            if (out_xfer) out_pkt <= !m_axis_tlast;
            if (in_done && !out_done)
                outstanding <= outstanding + 1'b1;
            else if (out_done && !in_done)
                outstanding <= outstanding - 1'b1;
        end
    end
endmodule
`default_nettype wire
