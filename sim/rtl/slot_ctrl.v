// slot_ctrl: AXI4-Lite control registers of one reconfigurable slot.
//
//   0x00 DECOUPLE   R/W  bit 0: request decoupling (as PG375's register 0x0)
//   0x04 STATUS     RO   bit 0: decouple_status (static side held safe)
//                        bit 1: rp_idle (RP holds no data)
//                        bit 2: RM in reset
//   0x08 RM_SELECT  R/W  bits [7:0]: RM to make active (>= NUM_RMS: empty).
//                        Writing a different value swaps the RM and resets it
//                        (the simulation stand-in for pr_download).
//   0x0C RM_RESET   R/W  bit 0: hold the RM in reset while 1
//   0x10 RM_ACTIVE  RO   bits [7:0]: RM now active
//   0x14 NUM_RMS    RO   number of RMs compiled into the slot
`default_nettype none
module slot_ctrl #(
    parameter ADDR_WIDTH = 12,
    parameter NUM_RMS    = 2,
    parameter [7:0] DEFAULT_RM = 8'd0
) (
    input  wire                  clk,
    input  wire                  rst,

    input  wire [ADDR_WIDTH-1:0] s_axil_awaddr,
    input  wire [2:0]            s_axil_awprot,
    input  wire                  s_axil_awvalid,
    output wire                  s_axil_awready,
    input  wire [31:0]           s_axil_wdata,
    input  wire [3:0]            s_axil_wstrb,
    input  wire                  s_axil_wvalid,
    output wire                  s_axil_wready,
    output wire [1:0]            s_axil_bresp,
    output wire                  s_axil_bvalid,
    input  wire                  s_axil_bready,
    input  wire [ADDR_WIDTH-1:0] s_axil_araddr,
    input  wire [2:0]            s_axil_arprot,
    input  wire                  s_axil_arvalid,
    output wire                  s_axil_arready,
    output wire [31:0]           s_axil_rdata,
    output wire [1:0]            s_axil_rresp,
    output wire                  s_axil_rvalid,
    input  wire                  s_axil_rready,

    output reg                   decouple,
    input  wire                  decouple_status,
    input  wire                  rp_idle,
    output reg  [7:0]            rm_select,
    output reg                   rm_reset,
    input  wire [7:0]            rm_active,
    input  wire                  rm_in_reset
);
    wire                  reg_wr_en, reg_rd_en;
    wire [ADDR_WIDTH-1:0] reg_wr_addr, reg_rd_addr;
    wire [31:0]           reg_wr_data;
    wire [3:0]            reg_wr_strb;
    reg  [31:0]           reg_rd_data;

    axil_reg_if #(.ADDR_WIDTH(ADDR_WIDTH)) u_regs (
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

    wire [ADDR_WIDTH-3:0] wr_word = reg_wr_addr[ADDR_WIDTH-1:2];
    wire [ADDR_WIDTH-3:0] rd_word = reg_rd_addr[ADDR_WIDTH-1:2];

    always @* begin
        reg_rd_data = 32'd0;
        case (rd_word)
            0: reg_rd_data[0]   = decouple;
            1: reg_rd_data[2:0] = {rm_in_reset, rp_idle, decouple_status};
            2: reg_rd_data[7:0] = rm_select;
            3: reg_rd_data[0]   = rm_reset;
            4: reg_rd_data[7:0] = rm_active;
            5: reg_rd_data      = NUM_RMS;
            default: reg_rd_data = 32'd0;
        endcase
    end

    always @(posedge clk) begin
        if (rst) begin
            decouple  <= 1'b0;
            rm_select <= DEFAULT_RM;
            rm_reset  <= 1'b0;
        end else if (reg_wr_en && reg_wr_strb[0]) begin
            case (wr_word)
                0: decouple  <= reg_wr_data[0];
                2: rm_select <= reg_wr_data[7:0];
                3: rm_reset  <= reg_wr_data[0];
                default: ;
            endcase
        end
    end
endmodule
`default_nettype wire
