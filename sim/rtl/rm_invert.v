// rm_invert: example reconfigurable module.  XORs TDATA with MASK (default
// all ones, i.e. bitwise invert); TLAST passes through.  Two register stages
// with skid buffers, so its latency differs from rm_add_const.
`default_nettype none
module rm_invert #(
    parameter DATA_WIDTH = 32,
    parameter [DATA_WIDTH-1:0] MASK = {DATA_WIDTH{1'b1}}
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    output wire [DATA_WIDTH-1:0] m_axis_tdata,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast
);
    wire [DATA_WIDTH-1:0] mid_tdata;
    wire                  mid_tvalid, mid_tready, mid_tlast;

    axis_skid_reg #(.DATA_WIDTH(DATA_WIDTH)) u_stage0 (
        .clk(clk), .rst(rst),
        .s_axis_tdata(s_axis_tdata ^ MASK), .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(mid_tdata), .m_axis_tvalid(mid_tvalid),
        .m_axis_tready(mid_tready), .m_axis_tlast(mid_tlast)
    );
    axis_skid_reg #(.DATA_WIDTH(DATA_WIDTH)) u_stage1 (
        .clk(clk), .rst(rst),
        .s_axis_tdata(mid_tdata), .s_axis_tvalid(mid_tvalid),
        .s_axis_tready(mid_tready), .s_axis_tlast(mid_tlast),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast)
    );
endmodule
`default_nettype wire
