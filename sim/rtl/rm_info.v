// rm_info: hwpart's RM identity block (AXI4-Lite, read-only).
//
//   0x0 MAGIC   0x4D52_5748 ('HWRM' little-endian)
//   0x4 RM_ID   the RM's id: the first 4 bytes of sha256(RM name), little-endian
//               (hwpart.board.regs.rm_id)
//   0x8 N_IN    the RM's input vector length
//   0xC N_OUT   the RM's output vector length
// of the RM now active (rm_active); all four read 0 when the slot is empty
// (rm_active >= NUM_RMS).  Other offsets read 0.  Writes are accepted and
// ignored; every access answers OKAY.
//
// On a Vivado shell this block lives inside the reconfigurable partition, one
// per RM (NUM_RMS = 1, rm_active tied to 0), so the partial bitstream brings
// its own identity.  In RTL simulation the slot holds its whole bank, so the
// block holds every RM's identity and shows the active one's.
//
// RM_IDS, RM_N_IN, RM_N_OUT: 32 bits per RM, RM r in bits [32*r +: 32].
`default_nettype none
module rm_info #(
    parameter ADDR_WIDTH = 12,
    parameter NUM_RMS    = 1,
    parameter [32*NUM_RMS-1:0] RM_IDS   = {NUM_RMS{32'd0}},
    parameter [32*NUM_RMS-1:0] RM_N_IN  = {NUM_RMS{32'd0}},
    parameter [32*NUM_RMS-1:0] RM_N_OUT = {NUM_RMS{32'd0}}
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

    input  wire [7:0]            rm_active
);
    localparam [31:0] RM_MAGIC = 32'h4D52_5748;  // 'HWRM'
    localparam RW = (NUM_RMS > 1) ? $clog2(NUM_RMS) : 1;

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

    wire          present = ({24'd0, rm_active} < NUM_RMS);
    wire [RW-1:0] idx     = present ? rm_active[RW-1:0] : {RW{1'b0}};
    wire [ADDR_WIDTH-3:0] rd_word = reg_rd_addr[ADDR_WIDTH-1:2];

    always @* begin
        reg_rd_data = 32'd0;
        if (present) begin
            case (rd_word)
                0: reg_rd_data = RM_MAGIC;
                1: reg_rd_data = RM_IDS[idx*32 +: 32];
                2: reg_rd_data = RM_N_IN[idx*32 +: 32];
                3: reg_rd_data = RM_N_OUT[idx*32 +: 32];
                default: reg_rd_data = 32'd0;
            endcase
        end
    end

    // writes are accepted (OKAY) and ignored
    wire unused_ok = &{1'b0, reg_wr_en, reg_wr_addr, reg_wr_data, reg_wr_strb, reg_rd_en,
                       reg_rd_addr[1:0]};
endmodule
`default_nettype wire
