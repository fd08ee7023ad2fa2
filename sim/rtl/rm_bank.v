// rm_bank: every reconfigurable module (RM) that a slot can hold, compiled
// in side by side (Xilinx's recommended way to simulate DFX in RTL).
// rm_slot.v instantiates one rm_bank per slot and selects one RM.
//
// This file is the example bank: RM 0 = rm_add_const (ADD=1),
// RM 1 = rm_invert (all-ones mask).  A generated bank (e.g. da4ml RMs) is a
// different file that defines a module with the same name and ports; build
// with it instead of this one (see sim/README.md).
//
// Ports: per-RM vectors, RM r uses bit r / slice r.  Every RM has the
// standard RM interface (clk, rst, s_axis_*, m_axis_*; see sim/README.md).
`default_nettype none
module rm_bank #(
    parameter DATA_WIDTH = 32,
    parameter NUM_RMS    = 2,
    parameter SLOT_INDEX = 0
) (
    input  wire                          clk,
    input  wire [NUM_RMS-1:0]            rm_rst,
    input  wire [NUM_RMS*DATA_WIDTH-1:0] s_axis_tdata,
    input  wire [NUM_RMS-1:0]            s_axis_tvalid,
    output wire [NUM_RMS-1:0]            s_axis_tready,
    input  wire [NUM_RMS-1:0]            s_axis_tlast,
    output wire [NUM_RMS*DATA_WIDTH-1:0] m_axis_tdata,
    output wire [NUM_RMS-1:0]            m_axis_tvalid,
    input  wire [NUM_RMS-1:0]            m_axis_tready,
    output wire [NUM_RMS-1:0]            m_axis_tlast
);
    localparam BANK_RMS = 2;

    generate
        if (NUM_RMS != BANK_RMS) begin : g_bad_num_rms
            // elaboration-time check: this bank holds exactly BANK_RMS RMs
            initial begin
                $display("rm_bank: NUM_RMS=%0d but this bank holds %0d RMs", NUM_RMS, BANK_RMS);
                $finish;
            end
        end
    endgenerate

    rm_add_const #(.DATA_WIDTH(DATA_WIDTH), .ADD(8'd1)) u_rm0 (
        .clk(clk), .rst(rm_rst[0]),
        .s_axis_tdata(s_axis_tdata[0*DATA_WIDTH +: DATA_WIDTH]),
        .s_axis_tvalid(s_axis_tvalid[0]), .s_axis_tready(s_axis_tready[0]),
        .s_axis_tlast(s_axis_tlast[0]),
        .m_axis_tdata(m_axis_tdata[0*DATA_WIDTH +: DATA_WIDTH]),
        .m_axis_tvalid(m_axis_tvalid[0]), .m_axis_tready(m_axis_tready[0]),
        .m_axis_tlast(m_axis_tlast[0])
    );

    rm_invert #(.DATA_WIDTH(DATA_WIDTH)) u_rm1 (
        .clk(clk), .rst(rm_rst[1]),
        .s_axis_tdata(s_axis_tdata[1*DATA_WIDTH +: DATA_WIDTH]),
        .s_axis_tvalid(s_axis_tvalid[1]), .s_axis_tready(s_axis_tready[1]),
        .s_axis_tlast(s_axis_tlast[1]),
        .m_axis_tdata(m_axis_tdata[1*DATA_WIDTH +: DATA_WIDTH]),
        .m_axis_tvalid(m_axis_tvalid[1]), .m_axis_tready(m_axis_tready[1]),
        .m_axis_tlast(m_axis_tlast[1])
    );
endmodule
`default_nettype wire
