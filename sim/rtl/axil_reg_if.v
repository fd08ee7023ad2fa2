// axil_reg_if: AXI4-Lite slave -> simple register bus.
//
// One write and one read may be in progress at a time (AXI4-Lite allows a
// slave to throttle like this).  A write is accepted in the cycle where both
// AWVALID and WVALID are high and no write response is pending; that cycle is
// also the reg_wr_en pulse.  A read is accepted when no read data is pending;
// reg_rd_data is sampled in the reg_rd_en cycle (combinational read mux in the
// parent) and returned one cycle later.  Responses are always OKAY.
`default_nettype none
module axil_reg_if #(
    parameter ADDR_WIDTH = 12
) (
    input  wire                  clk,
    input  wire                  rst,
    // AXI4-Lite slave
    input  wire [ADDR_WIDTH-1:0] s_axil_awaddr,
    input  wire [2:0]            s_axil_awprot,
    input  wire                  s_axil_awvalid,
    output wire                  s_axil_awready,
    input  wire [31:0]           s_axil_wdata,
    input  wire [3:0]            s_axil_wstrb,
    input  wire                  s_axil_wvalid,
    output wire                  s_axil_wready,
    output wire [1:0]            s_axil_bresp,
    output reg                   s_axil_bvalid,
    input  wire                  s_axil_bready,
    input  wire [ADDR_WIDTH-1:0] s_axil_araddr,
    input  wire [2:0]            s_axil_arprot,
    input  wire                  s_axil_arvalid,
    output wire                  s_axil_arready,
    output reg  [31:0]           s_axil_rdata,
    output wire [1:0]            s_axil_rresp,
    output reg                   s_axil_rvalid,
    input  wire                  s_axil_rready,
    // register bus
    output wire                  reg_wr_en,
    output wire [ADDR_WIDTH-1:0] reg_wr_addr,
    output wire [31:0]           reg_wr_data,
    output wire [3:0]            reg_wr_strb,
    output wire                  reg_rd_en,
    output wire [ADDR_WIDTH-1:0] reg_rd_addr,
    input  wire [31:0]           reg_rd_data
);
    assign reg_wr_en      = s_axil_awvalid && s_axil_wvalid && !s_axil_bvalid;
    assign s_axil_awready = reg_wr_en;
    assign s_axil_wready  = reg_wr_en;
    assign reg_wr_addr    = s_axil_awaddr;
    assign reg_wr_data    = s_axil_wdata;
    assign reg_wr_strb    = s_axil_wstrb;
    assign s_axil_bresp   = 2'b00;

    assign reg_rd_en      = s_axil_arvalid && !s_axil_rvalid;
    assign s_axil_arready = !s_axil_rvalid;
    assign reg_rd_addr    = s_axil_araddr;
    assign s_axil_rresp   = 2'b00;

    always @(posedge clk) begin
        if (rst) begin
            s_axil_bvalid <= 1'b0;
            s_axil_rvalid <= 1'b0;
            s_axil_rdata  <= 32'd0;
        end else begin
            if (reg_wr_en)
                s_axil_bvalid <= 1'b1;
            else if (s_axil_bready)
                s_axil_bvalid <= 1'b0;

            if (reg_rd_en) begin
                s_axil_rvalid <= 1'b1;
                s_axil_rdata  <= reg_rd_data;
            end else if (s_axil_rready) begin
                s_axil_rvalid <= 1'b0;
            end
        end
    end

    // awprot/arprot are accepted and ignored.
    wire unused_ok = &{1'b0, s_axil_awprot, s_axil_arprot};
endmodule
`default_nettype wire
