// slot_ctrl: hwpart's control block of one reconfigurable slot (AXI4-Lite).
//
//   0x00 SLOT_ID    RO   0x4353_5748 ('HWSC' little-endian): this is a slot_ctrl
//   0x04 STATUS     RO   bit 0: decouple_status (input, from the slot's DFX
//                               decoupler, PG375)
//                        bit 1: rp_idle (the RP holds no data, see below)
//                        bit 2: RM in reset
//   0x08 RM_SELECT  R/W  bits [7:0]: RM of the slot's bank to make active
//                        (>= NUM_RMS: empty slot).  The RTL-simulation
//                        stand-in for the configuration port; on a Vivado
//                        shell (NUM_RMS = 1) nothing is connected to it.
//   0x0C RM_RESET   R/W  bit 0: hold the RM in reset while 1
//   0x10 RM_ACTIVE  RO   bits [7:0]: the RM now active (input)
//   0x14 NUM_RMS    RO   how many RMs the slot's bank holds
//   other offsets read 0; every access answers OKAY.
//
// rp_idle: the block monitors (inputs only, it is not in the data path) the
// RP-side handshakes of the slot's decoupler -- the stream into the RM
// (rp_in_*) and the stream out of it (rp_out_*) -- and reports idle when no
// input packet is partly accepted, no output packet is partly emitted, and as
// many output packets have left as input packets went in (an RM emits one
// output packet per input packet).  A reset of the RM (rm_in_reset) clears
// the tracking: a reset RM holds nothing.
//
// Mutation hook (testing only): `define MUTANT_SLOT_IDLE_IGNORE_HELD reports
// the RP idle although it holds complete packets whose output has not started.
//
// Synthesizable Verilog-2005; in the Vivado shell it is a module reference
// with NUM_RMS = 1 (plain AXI4-Lite port names s_axil_*).
`default_nettype none
module slot_ctrl #(
    parameter ADDR_WIDTH = 12,
    parameter NUM_RMS    = 2,
    parameter [7:0] DEFAULT_RM = 8'd0,
    parameter CNT_WIDTH  = 8
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

    input  wire                  decouple_status,
    output reg  [7:0]            rm_select,
    output reg                   rm_reset,
    input  wire [7:0]            rm_active,
    input  wire                  rm_in_reset,

    // monitor of the RP-side handshakes (decoupler <-> RM)
    // (the X_ attributes make them AXI4-Stream interfaces in monitor mode for Vivado's
    // module-reference flow, so the Tcl taps the decoupler <-> RM nets; UG994)
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_in TVALID", X_INTERFACE_MODE = "monitor" *)
    input  wire                  rp_in_tvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_in TREADY" *)
    input  wire                  rp_in_tready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_in TLAST" *)
    input  wire                  rp_in_tlast,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_out TVALID", X_INTERFACE_MODE = "monitor" *)
    input  wire                  rp_out_tvalid,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_out TREADY" *)
    input  wire                  rp_out_tready,
    (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 rp_out TLAST" *)
    input  wire                  rp_out_tlast
);
    localparam [31:0] SLOT_MAGIC = 32'h4353_5748;  // 'HWSC'

    // ---------------- RP idle tracking ----------------
    reg                 in_pkt;       // input packet partly accepted
    reg                 out_pkt;      // output packet partly emitted
    reg [CNT_WIDTH-1:0] outstanding;  // input packets complete - output packets complete

    wire in_xfer  = rp_in_tvalid && rp_in_tready;
    wire out_xfer = rp_out_tvalid && rp_out_tready;
    wire in_done  = in_xfer && rp_in_tlast;
    wire out_done = out_xfer && rp_out_tlast;

    always @(posedge clk) begin
        if (rst || rm_in_reset) begin
            in_pkt      <= 1'b0;
            out_pkt     <= 1'b0;
            outstanding <= {CNT_WIDTH{1'b0}};
        end else begin
            if (in_xfer)  in_pkt  <= !rp_in_tlast;
            if (out_xfer) out_pkt <= !rp_out_tlast;
            if (in_done && !out_done)
                outstanding <= outstanding + 1'b1;
            else if (out_done && !in_done)
                outstanding <= outstanding - 1'b1;
        end
    end

`ifdef MUTANT_SLOT_IDLE_IGNORE_HELD
    wire rp_idle = !in_pkt && !out_pkt;
`else
    wire rp_idle = !in_pkt && !out_pkt && (outstanding == {CNT_WIDTH{1'b0}});
`endif

    // ---------------- registers ----------------
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
            0: reg_rd_data      = SLOT_MAGIC;
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
            rm_select <= DEFAULT_RM;
            rm_reset  <= 1'b0;
        end else if (reg_wr_en && reg_wr_strb[0]) begin
            case (wr_word)
                2: rm_select <= reg_wr_data[7:0];
                3: rm_reset  <= reg_wr_data[0];
                default: ;
            endcase
        end
    end

    wire unused_ok = &{1'b0, reg_rd_en, reg_wr_data[31:8], reg_wr_strb[3:1],
                       reg_wr_addr[1:0], reg_rd_addr[1:0]};
endmodule
`default_nettype wire
