// rm_da4ml_axis: the AXI4-Stream RM interface (sim/README.md) around one
// da4ml core, in the word format of hwpart/overlay/adapter.py (the same
// format the driver packs): LANES values of LANE_BITS bits (ap_fixed bit
// patterns, LANE_FRAC fraction bits) per DATA_WIDTH word, lane j of a word in
// bits [j*LANE_BITS +: LANE_BITS], every sample word-aligned (IN_WORDS words
// in, OUT_WORDS words out).
//
// The core is a free-running pipeline (no valid, no stall) that is CORE_LAT
// clock edges deep, so the adapter never lets more samples into it than its
// output FIFO can take: a sample is only accepted while fewer than DEPTH
// samples are in the pipeline or the FIFO (credits). That keeps AXI-Stream
// back-pressure lossless without stalling the core.
//
// The core is instantiated by the generated rm_bank (its module name is per
// RM) and connected through core_inp/core_out: elements of IN_BITS bits with
// IN_FRAC fraction bits in, OUT_BITS (OUT_SIGNED) with OUT_FRAC out, element
// i in [i*BITS +: BITS] (da4ml's uniform-width wrapper ports).
//
// TLAST: an input word with TLAST ends its sample (missing lanes are zero) and
// its packet; that sample's last output word carries TLAST, so every input
// packet gives exactly one output packet, as the decoupler requires.
// No combinational path from s_axis to m_axis: TREADY depends on registered
// credits only, TVALID on the FIFO.
`default_nettype none
module rm_da4ml_axis #(
    parameter DATA_WIDTH = 64,
    parameter LANE_BITS  = 16,
    parameter LANE_FRAC  = 10,
    parameter LANES      = 4,
    parameter N_IN       = 8,
    parameter N_OUT      = 4,
    parameter IN_WORDS   = 2,
    parameter OUT_WORDS  = 1,
    parameter IN_BITS    = 16,
    parameter IN_FRAC    = 10,
    parameter OUT_BITS   = 16,
    parameter OUT_SIGNED = 1,
    parameter OUT_FRAC   = 10,
    parameter CORE_LAT   = 1,
    parameter DEPTH      = 16          // power of two, >= CORE_LAT + 2 for II = max(IN_WORDS, OUT_WORDS)
) (
    input  wire                       clk,
    input  wire                       rst,
    input  wire [DATA_WIDTH-1:0]      s_axis_tdata,
    input  wire                       s_axis_tvalid,
    output wire                       s_axis_tready,
    input  wire                       s_axis_tlast,
    output wire [DATA_WIDTH-1:0]      m_axis_tdata,
    output wire                       m_axis_tvalid,
    input  wire                       m_axis_tready,
    output wire                       m_axis_tlast,
    output reg  [N_IN*IN_BITS-1:0]    core_inp,
    input  wire [N_OUT*OUT_BITS-1:0]  core_out
);
    localparam IW  = IN_WORDS * DATA_WIDTH;
    localparam OW  = OUT_WORDS * DATA_WIDTH;
    localparam AW  = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam ICW = $clog2(IN_WORDS + 1);
    localparam OCW = $clog2(OUT_WORDS + 1);

    // ---------------- input: words -> one sample -> core
    reg  [IW-1:0]  in_buf;
    reg  [ICW-1:0] in_cnt;
    reg  [AW:0]    used;            // samples in the core pipeline or the FIFO
    wire [IW-1:0]  next_buf;
    wire [N_IN*IN_BITS-1:0] next_core;

`ifdef MUTANT_ADAPTER_NO_CREDIT
    assign s_axis_tready = !rst;   // test-only mutant: ignores the FIFO's room
`else
    assign s_axis_tready = !rst && (used < DEPTH);
`endif
    wire acc    = s_axis_tvalid && s_axis_tready;
    wire finish = acc && (in_cnt == IN_WORDS - 1 || s_axis_tlast);

    genvar w, i;
    generate
        for (w = 0; w < IN_WORDS; w = w + 1) begin : g_word
            assign next_buf[w*DATA_WIDTH +: DATA_WIDTH] =
                (in_cnt == w) ? s_axis_tdata : in_buf[w*DATA_WIDTH +: DATA_WIDTH];
        end
        // lane value (LANE_FRAC) -> core element (IN_FRAC): shift, floor, wrap
        for (i = 0; i < N_IN; i = i + 1) begin : g_in
            wire signed [LANE_BITS-1:0] lane =
                next_buf[(i / LANES) * DATA_WIDTH + (i % LANES) * LANE_BITS +: LANE_BITS];
            wire signed [63:0] wide = lane;
            if (IN_FRAC >= LANE_FRAC) begin : g_l
                wire signed [63:0] v = wide <<< (IN_FRAC - LANE_FRAC);
                assign next_core[i*IN_BITS +: IN_BITS] = v[IN_BITS-1:0];
            end else begin : g_r
                wire signed [63:0] v = wide >>> (LANE_FRAC - IN_FRAC);
                assign next_core[i*IN_BITS +: IN_BITS] = v[IN_BITS-1:0];
            end
        end
    endgenerate

    // ---------------- core pipeline bookkeeping: vpipe[k] = the sample issued k edges ago
    reg [CORE_LAT:0] vpipe, lpipe;
    always @(posedge clk) begin
        if (rst) begin
            in_buf <= {IW{1'b0}};
            in_cnt <= {ICW{1'b0}};
            vpipe  <= {(CORE_LAT+1){1'b0}};
            lpipe  <= {(CORE_LAT+1){1'b0}};
            core_inp <= {(N_IN*IN_BITS){1'b0}};
        end else begin
            vpipe <= {vpipe[CORE_LAT-1:0], finish};
            lpipe <= {lpipe[CORE_LAT-1:0], finish && s_axis_tlast};
            if (finish) begin
                core_inp <= next_core;
                in_buf   <= {IW{1'b0}};
                in_cnt   <= {ICW{1'b0}};
            end else if (acc) begin
                in_buf <= next_buf;
                in_cnt <= in_cnt + 1'b1;
            end
        end
    end

    // ---------------- core element (OUT_FRAC) -> lane value (LANE_FRAC)
    wire [OW-1:0] out_vec;
    generate
        for (i = 0; i < OUT_WORDS * LANES; i = i + 1) begin : g_out
            localparam BASE = (i / LANES) * DATA_WIDTH + (i % LANES) * LANE_BITS;
            if (i < N_OUT) begin : g_v
                wire [OUT_BITS-1:0] e = core_out[i*OUT_BITS +: OUT_BITS];
                wire signed [63:0] wide = OUT_SIGNED ? {{(64-OUT_BITS){e[OUT_BITS-1]}}, e}
                                                     : {{(64-OUT_BITS){1'b0}}, e};
                if (LANE_FRAC >= OUT_FRAC) begin : g_l
                    wire signed [63:0] v = wide <<< (LANE_FRAC - OUT_FRAC);
                    assign out_vec[BASE +: LANE_BITS] = v[LANE_BITS-1:0];
                end else begin : g_r
                    wire signed [63:0] v = wide >>> (OUT_FRAC - LANE_FRAC);
                    assign out_vec[BASE +: LANE_BITS] = v[LANE_BITS-1:0];
                end
            end else begin : g_z
                assign out_vec[BASE +: LANE_BITS] = {LANE_BITS{1'b0}};
            end
        end
        for (w = 0; w < OUT_WORDS; w = w + 1) begin : g_pad
            if (DATA_WIDTH > LANES * LANE_BITS) begin : g_p
                assign out_vec[w*DATA_WIDTH + LANES*LANE_BITS +: DATA_WIDTH - LANES*LANE_BITS] = 0;
            end
        end
    endgenerate

    // ---------------- output FIFO of samples -> words
    reg [OW-1:0]  fifo_data [0:DEPTH-1];
    reg           fifo_last [0:DEPTH-1];
    reg [AW:0]    wr_ptr, rd_ptr;
    reg [OCW-1:0] out_cnt;
    wire empty = (wr_ptr == rd_ptr);
    wire [OW-1:0] head = fifo_data[rd_ptr[AW-1:0]];

    assign m_axis_tvalid = !rst && !empty;
    assign m_axis_tdata  = head >> (out_cnt * DATA_WIDTH);
    assign m_axis_tlast  = !empty && fifo_last[rd_ptr[AW-1:0]] && (out_cnt == OUT_WORDS - 1);
    wire emit = m_axis_tvalid && m_axis_tready;
    wire pop  = emit && (out_cnt == OUT_WORDS - 1);

    always @(posedge clk) begin
        if (rst) begin
            wr_ptr  <= {(AW+1){1'b0}};
            rd_ptr  <= {(AW+1){1'b0}};
            out_cnt <= {OCW{1'b0}};
            used    <= {(AW+1){1'b0}};
        end else begin
            if (vpipe[CORE_LAT]) begin
                fifo_data[wr_ptr[AW-1:0]] <= out_vec;
                fifo_last[wr_ptr[AW-1:0]] <= lpipe[CORE_LAT];
                wr_ptr <= wr_ptr + 1'b1;
            end
            if (emit) out_cnt <= pop ? {OCW{1'b0}} : out_cnt + 1'b1;
            if (pop) rd_ptr <= rd_ptr + 1'b1;
            used <= used + finish - pop;
        end
    end
endmodule
`default_nettype wire
