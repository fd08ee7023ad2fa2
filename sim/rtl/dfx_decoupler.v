// dfx_decoupler: DFX decoupler for one AXI4-Stream into and one AXI4-Stream
// out of a reconfigurable partition (RP), behaving like Xilinx's DFX
// Decoupler (PG375) configured with these two AXI4-Stream interfaces.
//
//   static side                      RP side
//   s_axis  (switch -> decoupler) -> rp_m_axis (decoupler -> RM input)
//   m_axis  (decoupler -> switch) <- rp_s_axis (RM output -> decoupler)
//
// Control (parameter HAS_AXI_LITE, as the IP's option of the same name):
//   HAS_AXI_LITE = 1 (default): an AXI4-Lite slave s_axil_* with ONE
//     register at offset 0x0: write bit 0 = decouple; a read returns the
//     decoupling status in bit 0 (bits 31:1 read 0).  Every other offset
//     reads 0; every access answers OKAY, as the IP does.  The `decouple`
//     input is unused (tie it to 0).
//   HAS_AXI_LITE = 0: the `decouple` input drives decoupling; the AXI4-Lite
//     slave is absent (its outputs are tied to 0: never ready, never valid).
//
// Behaviour (PG375): decoupling acts AT ONCE and knows nothing of packets.
//   * While decouple = 1, TVALID and TREADY towards the static side and
//     towards the RP are forced to 0, in the same cycle, even in the middle
//     of a packet: a packet can be cut, part of it inside the RP, the rest
//     held (back-pressured) upstream.  TDATA and TLAST pass unchanged.
//   * decouple_status = decouple, combinational (the IP does not register it).
// So a driver must make the slot idle BEFORE it decouples (route nothing into
// it, wait until the RP holds nothing: slot_ctrl.v's STATUS.rp_idle), then
// decouple, reconfigure, reset the RM and recouple (sim/README.md).
//
// Mutation hook (testing only): `define MUTANT_DECOUPLER_PASSTHROUGH keeps
// both directions open while decoupled (decouple_status still reports 1).
`default_nettype none
module dfx_decoupler #(
    parameter DATA_WIDTH   = 32,
    parameter HAS_AXI_LITE = 1,
    parameter ADDR_WIDTH   = 12
) (
    input  wire                  clk,
    input  wire                  rst,

    // HAS_AXI_LITE = 0: decoupling request; HAS_AXI_LITE = 1: unused
    input  wire                  decouple,
    output wire                  decouple_status,

    // HAS_AXI_LITE = 1: the IP's AXI4-Lite register interface
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

    // static side, into the RP
    input  wire [DATA_WIDTH-1:0] s_axis_tdata,
    input  wire                  s_axis_tvalid,
    output wire                  s_axis_tready,
    input  wire                  s_axis_tlast,
    // RP side, into the RM
    output wire [DATA_WIDTH-1:0] rp_m_axis_tdata,
    output wire                  rp_m_axis_tvalid,
    input  wire                  rp_m_axis_tready,
    output wire                  rp_m_axis_tlast,
    // RP side, out of the RM
    input  wire [DATA_WIDTH-1:0] rp_s_axis_tdata,
    input  wire                  rp_s_axis_tvalid,
    output wire                  rp_s_axis_tready,
    input  wire                  rp_s_axis_tlast,
    // static side, out of the RP
    output wire [DATA_WIDTH-1:0] m_axis_tdata,
    output wire                  m_axis_tvalid,
    input  wire                  m_axis_tready,
    output wire                  m_axis_tlast
);
    wire decoupled;

    generate
        if (HAS_AXI_LITE != 0) begin : g_axil
            reg                   decouple_reg;
            wire                  reg_wr_en, reg_rd_en;
            wire [ADDR_WIDTH-1:0] reg_wr_addr, reg_rd_addr;
            wire [31:0]           reg_wr_data;
            wire [3:0]            reg_wr_strb;
            wire [31:0]           reg_rd_data;

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

            // the one register, at 0x0: bit 0 decouple; reads the status
            wire at_zero_wr = (reg_wr_addr[ADDR_WIDTH-1:2] == {(ADDR_WIDTH-2){1'b0}});
            wire at_zero_rd = (reg_rd_addr[ADDR_WIDTH-1:2] == {(ADDR_WIDTH-2){1'b0}});
            assign reg_rd_data = {31'd0, at_zero_rd && decouple_status};

            always @(posedge clk) begin
                if (rst)
                    decouple_reg <= 1'b0;
                else if (reg_wr_en && at_zero_wr && reg_wr_strb[0])
                    decouple_reg <= reg_wr_data[0];
            end

            assign decoupled = decouple_reg;
            wire unused_ok = &{1'b0, decouple, reg_rd_en, reg_wr_data[31:1],
                               reg_wr_strb[3:1], reg_wr_addr[1:0], reg_rd_addr[1:0]};
        end else begin : g_port
            assign decoupled      = decouple;
            assign s_axil_awready = 1'b0;
            assign s_axil_wready  = 1'b0;
            assign s_axil_bresp   = 2'b00;
            assign s_axil_bvalid  = 1'b0;
            assign s_axil_arready = 1'b0;
            assign s_axil_rdata   = 32'd0;
            assign s_axil_rresp   = 2'b00;
            assign s_axil_rvalid  = 1'b0;
            wire unused_ok = &{1'b0, s_axil_awaddr, s_axil_awprot, s_axil_awvalid,
                               s_axil_wdata, s_axil_wstrb, s_axil_wvalid, s_axil_bready,
                               s_axil_araddr, s_axil_arprot, s_axil_arvalid, s_axil_rready};
        end
    endgenerate

    assign decouple_status = decoupled;

`ifdef MUTANT_DECOUPLER_PASSTHROUGH
    wire gate = 1'b0;
`else
    wire gate = decoupled;
`endif

    assign rp_m_axis_tdata  = s_axis_tdata;
    assign rp_m_axis_tlast  = s_axis_tlast;
    assign rp_m_axis_tvalid = s_axis_tvalid && !gate;
    assign s_axis_tready    = rp_m_axis_tready && !gate;

    assign m_axis_tdata     = rp_s_axis_tdata;
    assign m_axis_tlast     = rp_s_axis_tlast;
    assign m_axis_tvalid    = rp_s_axis_tvalid && !gate;
    assign rp_s_axis_tready = m_axis_tready && !gate;
endmodule
`default_nettype wire
