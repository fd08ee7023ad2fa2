// rm_slot: one reconfigurable partition (slot) for RTL simulation of DFX.
//
// All RMs of the slot are compiled in (rm_bank); rm_select picks the active
// one.  Inactive RMs are held in reset, so an RM keeps no state across being
// swapped out, as with a real partial bitstream.  A swap (rm_select differs
// from the active RM) makes the new RM active and holds it in reset for
// RESET_CYCLES cycles; rm_reset (software reset of the RP) holds it in reset
// as long as it is 1.  While in reset the slot accepts and emits nothing.
// rm_select >= NUM_RMS selects no RM: an empty (greybox) slot that never
// accepts or emits a beat.
//
// A swap is meant to happen while the slot's decoupler reports
// decouple_status=1 (see dfx_decoupler.v); swapping a slot that still holds
// data loses that data, as it would on hardware.
`default_nettype none
module rm_slot #(
    parameter DATA_WIDTH   = 32,
    parameter NUM_RMS      = 2,
    parameter SEL_WIDTH    = 8,
    parameter RESET_CYCLES = 4,
    parameter SLOT_INDEX   = 0
) (
    input  wire                  clk,
    input  wire                  rst,

    input  wire [SEL_WIDTH-1:0]  rm_select,
    input  wire                  rm_reset,
    output reg  [SEL_WIDTH-1:0]  rm_active,
    output wire                  rm_in_reset,

    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    output wire [DATA_WIDTH-1:0] m_axis_tdata,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast
);
    localparam RW = (NUM_RMS > 1) ? $clog2(NUM_RMS) : 1;
    localparam CW = (RESET_CYCLES > 1) ? $clog2(RESET_CYCLES + 1) : 1;

    reg [CW-1:0] rst_cnt;
    assign rm_in_reset = rst || rm_reset || (rst_cnt != {CW{1'b0}});

    always @(posedge clk) begin
        if (rst) begin
            rm_active <= rm_select;
            rst_cnt   <= RESET_CYCLES;
        end else if (rm_select != rm_active) begin
            rm_active <= rm_select;
            rst_cnt   <= RESET_CYCLES;
        end else if (rst_cnt != {CW{1'b0}}) begin
            rst_cnt <= rst_cnt - 1'b1;
        end
    end

    wire present = ({{(32-SEL_WIDTH){1'b0}}, rm_active} < NUM_RMS);
    wire live    = present && !rm_in_reset;

    wire [NUM_RMS-1:0]            bank_rst;
    wire [NUM_RMS*DATA_WIDTH-1:0] bank_s_tdata;
    wire [NUM_RMS-1:0]            bank_s_tvalid, bank_s_tready, bank_s_tlast;
    wire [NUM_RMS*DATA_WIDTH-1:0] bank_m_tdata;
    wire [NUM_RMS-1:0]            bank_m_tvalid, bank_m_tready, bank_m_tlast;

    genvar r;
    generate
        for (r = 0; r < NUM_RMS; r = r + 1) begin : g_rm
            wire active = ({{(32-SEL_WIDTH){1'b0}}, rm_active} == r);
            assign bank_rst[r]                             = rm_in_reset || !active;
            assign bank_s_tdata[r*DATA_WIDTH +: DATA_WIDTH] = s_axis_tdata;
            assign bank_s_tlast[r]                         = s_axis_tlast;
            assign bank_s_tvalid[r]                        = s_axis_tvalid && live && active;
            assign bank_m_tready[r]                        = m_axis_tready && live && active;
        end
    endgenerate

    wire [RW-1:0] idx = present ? rm_active[RW-1:0] : {RW{1'b0}};
    assign s_axis_tready = live && bank_s_tready[idx];
    assign m_axis_tvalid = live && bank_m_tvalid[idx];
    assign m_axis_tlast  = live && bank_m_tlast[idx];
    assign m_axis_tdata  = live ? bank_m_tdata[idx*DATA_WIDTH +: DATA_WIDTH] : {DATA_WIDTH{1'b0}};

    rm_bank #(.DATA_WIDTH(DATA_WIDTH), .NUM_RMS(NUM_RMS), .SLOT_INDEX(SLOT_INDEX)) u_bank (
        .clk(clk), .rm_rst(bank_rst),
        .s_axis_tdata(bank_s_tdata), .s_axis_tvalid(bank_s_tvalid),
        .s_axis_tready(bank_s_tready), .s_axis_tlast(bank_s_tlast),
        .m_axis_tdata(bank_m_tdata), .m_axis_tvalid(bank_m_tvalid),
        .m_axis_tready(bank_m_tready), .m_axis_tlast(bank_m_tlast)
    );
endmodule
`default_nettype wire
