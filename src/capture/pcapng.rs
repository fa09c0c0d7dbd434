//! A small pcapng writer (draft-ietf-opsawg-pcapng, "PCAP Next Generation
//! Capture File Format"): the Section Header, Interface Description,
//! Enhanced Packet and Decryption Secrets blocks, little-endian, which is
//! all `labctl capture` writes. Each function returns one whole block.

/// Block type of the Section Header Block (§4.1).
const SHB: u32 = 0x0A0D_0D0A;
/// Block type of the Interface Description Block (§4.2).
const IDB: u32 = 0x0000_0001;
/// Block type of the Enhanced Packet Block (§4.3).
const EPB: u32 = 0x0000_0006;
/// Block type of the Decryption Secrets Block (§4.7).
const DSB: u32 = 0x0000_000A;
/// The byte-order magic of a section (§4.1).
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Secrets type of a TLS key log in the NSS format (§4.7, "TLSK").
pub const SECRETS_TLS_KEY_LOG: u32 = 0x544c_534b;
/// LINKTYPE_ETHERNET (the link-layer types registry).
pub const LINKTYPE_ETHERNET: u16 = 1;

/// `opt_comment` (§3.5): any block.
pub const OPT_COMMENT: u16 = 1;
/// `shb_hardware` (§4.1).
pub const SHB_HARDWARE: u16 = 2;
/// `shb_os` (§4.1).
pub const SHB_OS: u16 = 3;
/// `shb_userappl` (§4.1).
pub const SHB_USERAPPL: u16 = 4;
/// `if_name` (§4.2).
pub const IF_NAME: u16 = 2;
/// `if_description` (§4.2).
pub const IF_DESCRIPTION: u16 = 3;
/// `if_tsresol` (§4.2): timestamps in units of 10^-value seconds.
pub const IF_TSRESOL: u16 = 9;

/// Zero bytes that pad `len` to a multiple of 4 (§3.1: blocks and option
/// values are 32-bit aligned).
fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// The options of a block (§3.5), ended by `opt_endofopt` when there are any.
fn options(opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, value) in opts {
        // An option value is at most 65,535 bytes; longer text is cut.
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out.resize(out.len() + pad(value.len()), 0);
    }
    if !out.is_empty() {
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    out
}

/// A block of `kind` with `body` (already padded): type, total length,
/// body, total length again (§3.1).
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

/// A Section Header Block, version 1.0, section length unknown (§4.1).
pub fn section_header(opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    body.extend_from_slice(&options(opts));
    block(SHB, &body)
}

/// An Interface Description Block whose timestamps are in nanoseconds
/// (`if_tsresol` 9), with `opts` (§4.2).
pub fn interface(linktype: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&linktype.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    let mut all: Vec<(u16, &[u8])> = opts.to_vec();
    all.push((IF_TSRESOL, &[9]));
    body.extend_from_slice(&options(&all));
    block(IDB, &body)
}

/// An Enhanced Packet Block (§4.3): `data` captured on interface
/// `interface` at `ts_nanos` since the epoch, `original_len` bytes on the wire.
pub fn packet(interface: u32, ts_nanos: u64, data: &[u8], original_len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(20 + data.len() + 3);
    body.extend_from_slice(&interface.to_le_bytes());
    body.extend_from_slice(&((ts_nanos >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_nanos as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&original_len.to_le_bytes());
    body.extend_from_slice(data);
    body.resize(body.len() + pad(data.len()), 0);
    block(EPB, &body)
}

/// A Decryption Secrets Block (§4.7) of `secrets_type`. Readers apply it
/// to the packets after it, so it precedes them in the file.
pub fn decryption_secrets(secrets_type: u32, secrets: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + secrets.len() + 3);
    body.extend_from_slice(&secrets_type.to_le_bytes());
    body.extend_from_slice(&(secrets.len() as u32).to_le_bytes());
    body.extend_from_slice(secrets);
    body.resize(body.len() + pad(secrets.len()), 0);
    block(DSB, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Splits a file into (type, body) blocks, checking both length fields.
    fn blocks(file: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let total = u32_at(file, at + 4) as usize;
            assert_eq!(total % 4, 0, "block length aligned");
            assert_eq!(
                u32_at(file, at + total - 4) as usize,
                total,
                "trailing length"
            );
            out.push((u32_at(file, at), file[at + 8..at + total - 4].to_vec()));
            at += total;
        }
        assert_eq!(at, file.len());
        out
    }

    #[test]
    fn blocks_have_the_layout_of_the_spec() {
        let mut file = section_header(&[(SHB_USERAPPL, b"labctl")]);
        file.extend(interface(LINKTYPE_ETHERNET, 262_144, &[(IF_NAME, b"dns")]));
        file.extend(decryption_secrets(
            SECRETS_TLS_KEY_LOG,
            b"CLIENT_RANDOM 01 02\n",
        ));
        file.extend(packet(0, 0x1_0000_0002, &[0xaa; 5], 60));
        let b = blocks(&file);
        assert_eq!(
            b.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [SHB, IDB, DSB, EPB]
        );
        // SHB: magic, version 1.0, length -1, then shb_userappl "labctl" padded, end.
        let shb = &b[0].1;
        assert_eq!(u32_at(shb, 0), 0x1A2B_3C4D);
        assert_eq!(&shb[4..8], &[1, 0, 0, 0]);
        assert_eq!(&shb[8..16], &[0xff; 8]);
        assert_eq!(&shb[16..20], &[4, 0, 6, 0]);
        assert_eq!(&shb[20..28], b"labctl\0\0");
        assert_eq!(&shb[28..32], &[0, 0, 0, 0]);
        // IDB: linktype 1, snaplen, if_name, if_tsresol 9.
        let idb = &b[1].1;
        assert_eq!(&idb[0..4], &[1, 0, 0, 0]);
        assert_eq!(u32_at(idb, 4), 262_144);
        assert_eq!(&idb[8..16], &[2, 0, 3, 0, b'd', b'n', b's', 0]);
        assert_eq!(&idb[16..24], &[9, 0, 1, 0, 9, 0, 0, 0]);
        // DSB: "TLSK", length 20, the secrets (20 bytes: no padding).
        let dsb = &b[2].1;
        assert_eq!(&dsb[0..4], b"KSLT");
        assert_eq!(u32_at(dsb, 4), 20);
        assert_eq!(&dsb[8..28], b"CLIENT_RANDOM 01 02\n");
        assert_eq!(dsb.len(), 28);
        // EPB: interface 0, timestamp high/low, lengths, data padded to 8.
        let epb = &b[3].1;
        assert_eq!([u32_at(epb, 0), u32_at(epb, 4), u32_at(epb, 8)], [0, 1, 2]);
        assert_eq!([u32_at(epb, 12), u32_at(epb, 16)], [5, 60]);
        assert_eq!(&epb[20..28], &[0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0]);
    }

    #[test]
    fn no_options_means_no_end_of_options() {
        assert_eq!(section_header(&[]).len(), 28);
        assert_eq!(options(&[(OPT_COMMENT, b"")]), [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
