// axis_skid_reg: one AXI4-Stream register stage with a skid buffer.
// Full throughput (one beat per cycle when the sink is ready), TREADY towards
// the source is a register output (no combinational path from m_axis_tready),
// and back-pressure never drops or duplicates a beat.  In reset the stage
// is empty and s_axis_tready is 0.
`default_nettype none
module axis_skid_reg #(
    parameter DATA_WIDTH = 32
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    output reg  [DATA_WIDTH-1:0] m_axis_tdata,
    output reg                   m_axis_tvalid,
    input  wire                  m_axis_tready,
    output reg                   m_axis_tlast
);
    reg [DATA_WIDTH-1:0] skid_tdata;
    reg                  skid_tlast;
    reg                  skid_valid;
    reg                  ready_q;

    assign s_axis_tready = ready_q;
    wire in_xfer = s_axis_tvalid && ready_q;

    always @(posedge clk) begin
        if (rst) begin
            m_axis_tvalid <= 1'b0;
            m_axis_tdata  <= {DATA_WIDTH{1'b0}};
            m_axis_tlast  <= 1'b0;
            skid_valid    <= 1'b0;
            skid_tdata    <= {DATA_WIDTH{1'b0}};
            skid_tlast    <= 1'b0;
            ready_q       <= 1'b0;
        end else begin
            if (m_axis_tready || !m_axis_tvalid) begin
                // output register free (or freed this cycle)
                if (skid_valid) begin
                    m_axis_tdata  <= skid_tdata;
                    m_axis_tlast  <= skid_tlast;
                    m_axis_tvalid <= 1'b1;
                    skid_valid    <= 1'b0;
                end else if (in_xfer) begin
                    m_axis_tdata  <= s_axis_tdata;
                    m_axis_tlast  <= s_axis_tlast;
                    m_axis_tvalid <= 1'b1;
                end else begin
                    m_axis_tvalid <= 1'b0;
                end
                ready_q <= 1'b1;
            end else if (in_xfer) begin
                // output stalled: park the beat in the skid buffer
                skid_tdata <= s_axis_tdata;
                skid_tlast <= s_axis_tlast;
                skid_valid <= 1'b1;
                ready_q    <= 1'b0;
            end
        end
    end
endmodule
`default_nettype wire
