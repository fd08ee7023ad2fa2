// rm_add_const: example reconfigurable module.  Adds ADD (mod 256) to every
// byte of TDATA; TLAST passes through.  One register stage with skid buffer.
`default_nettype none
module rm_add_const #(
    parameter DATA_WIDTH = 32,
    parameter [7:0] ADD  = 8'd1
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
    reg [DATA_WIDTH-1:0] sum;
    integer b;
    always @* begin
        sum = s_axis_tdata;
        for (b = 0; b + 8 <= DATA_WIDTH; b = b + 8)
            sum[b +: 8] = s_axis_tdata[b +: 8] + ADD;
    end

    axis_skid_reg #(.DATA_WIDTH(DATA_WIDTH)) u_stage (
        .clk(clk), .rst(rst),
        .s_axis_tdata(sum), .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast)
    );
endmodule
`default_nettype wire
