//! The marker segments of a JPEG file that decide how its entropy-coded data
//! must be laid out (ITU-T T.81, Annex B): the frame header (SOF), Huffman
//! tables (DHT), the restart interval (DRI) and scan headers (SOS). Parsing
//! only: what the entropy data must then contain is `jpeg_entropy`'s work.

/// One image component of the frame: its id and sampling factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameComponent {
    pub id: u8,
    pub h: u8,
    pub v: u8,
}

/// A baseline or extended sequential Huffman frame (SOF0 / SOF1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub precision: u8,
    pub width: u16,
    pub height: u16,
    pub components: Vec<FrameComponent>,
}

/// One component of a scan: the frame's entry for it (sampling factors),
/// and its DC and AC Huffman table slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanComponent {
    pub component: FrameComponent,
    pub dc_table: u8,
    pub ac_table: u8,
}

/// A scan header (SOS), with its spectral selection and approximation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    pub components: Vec<ScanComponent>,
    pub spectral_start: u8,
    pub spectral_end: u8,
    pub approximation: u8,
}

/// A canonical Huffman table (T.81 Annex C): for each code length, the
/// largest code of that length and where its symbols start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HuffmanTable {
    /// `max_code[l - 1]`: the largest code of length l, or -1 if none.
    pub max_code: [i32; 16],
    /// `first_symbol[l - 1] - first_code[l - 1]`: added to a code of length
    /// l it gives the symbol's index in `symbols`.
    pub offset: [i32; 16],
    pub symbols: Vec<u8>,
}

impl HuffmanTable {
    /// Builds the canonical codes from the 16 per-length counts and the
    /// symbols in code order. `None` when the counts overflow the code space
    /// or do not match the symbols.
    pub fn new(counts: &[u8; 16], symbols: &[u8]) -> Option<HuffmanTable> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != symbols.len() || total > 256 {
            return None;
        }
        let mut max_code = [-1i32; 16];
        let mut offset = [0i32; 16];
        let mut code: i32 = 0;
        let mut index: i32 = 0;
        for (l, &count) in counts.iter().enumerate() {
            let count = i32::from(count);
            if count > 0 {
                offset[l] = index - code;
                code += count;
                index += count;
                // Codes of length l + 1 are l + 1 bits wide.
                if code > (1 << (l + 1)) {
                    return None;
                }
                max_code[l] = code - 1;
            }
            code <<= 1;
        }
        Some(HuffmanTable {
            max_code,
            offset,
            symbols: symbols.to_vec(),
        })
    }
}

/// Big-endian u16 at `at`.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// A frame header's body (after the length field).
pub(crate) fn parse_frame(body: &[u8]) -> Result<Frame, String> {
    let (&precision, rest) = body.split_first().ok_or("empty frame header")?;
    let height = u16_at(rest, 0).ok_or("short frame header")?;
    let width = u16_at(rest, 2).ok_or("short frame header")?;
    let count = usize::from(*rest.get(4).ok_or("short frame header")?);
    let specs = rest.get(5..).ok_or("short frame header")?;
    if count == 0 || count > 4 || specs.len() < count * 3 {
        return Err(format!("frame header with {count} components"));
    }
    let components: Vec<FrameComponent> = specs
        .chunks_exact(3)
        .take(count)
        .map(|c| FrameComponent {
            id: c[0],
            h: c[1] >> 4,
            v: c[1] & 0x0F,
        })
        .collect();
    if components
        .iter()
        .any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v))
    {
        return Err("frame header with a sampling factor outside 1–4".into());
    }
    if precision != 8 && precision != 12 {
        return Err(format!("frame precision {precision} bits"));
    }
    if width == 0 {
        return Err("frame of width 0".into());
    }
    Ok(Frame {
        precision,
        width,
        height,
        components,
    })
}

/// The tables of one DHT segment body: (class 0 = DC / 1 = AC, slot, table).
pub(crate) fn parse_huffman_tables(body: &[u8]) -> Result<Vec<(u8, u8, HuffmanTable)>, String> {
    let mut tables = Vec::new();
    let mut at = 0usize;
    while let Some(&class_slot) = body.get(at) {
        let (class, slot) = (class_slot >> 4, class_slot & 0x0F);
        if class > 1 || slot > 3 {
            return Err(format!("Huffman table of class {class}, slot {slot}"));
        }
        let counts: [u8; 16] = body
            .get(at + 1..at + 17)
            .and_then(|c| c.try_into().ok())
            .ok_or("short Huffman table")?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body
            .get(at + 17..at + 17 + total)
            .ok_or("short Huffman table")?;
        let table = HuffmanTable::new(&counts, symbols)
            .ok_or("Huffman table with impossible code lengths")?;
        tables.push((class, slot, table));
        at += 17 + total;
    }
    Ok(tables)
}

/// A scan header's body, its components resolved against the frame.
pub(crate) fn parse_scan(body: &[u8], frame: &Frame) -> Result<Scan, String> {
    let count = usize::from(*body.first().ok_or("empty scan header")?);
    let specs = body.get(1..1 + count * 2).ok_or("short scan header")?;
    if count == 0 || count > 4 {
        return Err(format!("scan header with {count} components"));
    }
    let mut components = Vec::with_capacity(count);
    for spec in specs.chunks_exact(2) {
        let component = *frame
            .components
            .iter()
            .find(|c| c.id == spec[0])
            .ok_or_else(|| format!("scan names component {} that the frame lacks", spec[0]))?;
        components.push(ScanComponent {
            component,
            dc_table: spec[1] >> 4,
            ac_table: spec[1] & 0x0F,
        });
    }
    let tail = body
        .get(1 + count * 2..1 + count * 2 + 3)
        .ok_or("short scan header")?;
    Ok(Scan {
        components,
        spectral_start: tail[0],
        spectral_end: tail[1],
        approximation: tail[2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_codes_by_hand() {
        // Counts: one code of length 2, three of length 3, one of length 4.
        // Canonical assignment (T.81 Figure C.2): 00 → a; 010, 011, 100 →
        // b, c, d; 1010 → e.
        let mut counts = [0u8; 16];
        counts[1] = 1;
        counts[2] = 3;
        counts[3] = 1;
        let t = HuffmanTable::new(&counts, b"abcde").unwrap();
        assert_eq!(t.max_code[0], -1);
        assert_eq!(t.max_code[1], 0b00);
        assert_eq!(t.max_code[2], 0b100);
        assert_eq!(t.max_code[3], 0b1010);
        // Symbol index = code + offset: 010 → 1 (b), 100 → 3 (d), 1010 → 4 (e).
        assert_eq!(0b010 + t.offset[2], 1);
        assert_eq!(0b100 + t.offset[2], 3);
        assert_eq!(0b1010 + t.offset[3], 4);
    }

    #[test]
    fn impossible_tables_are_refused() {
        // Three codes of length 1 do not fit in one bit.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert_eq!(HuffmanTable::new(&counts, b"abc"), None);
        // Counts and symbols disagree.
        counts[0] = 1;
        assert_eq!(HuffmanTable::new(&counts, b"ab"), None);
    }

    #[test]
    fn frame_and_scan_headers() {
        // 8-bit, 16 high, 24 wide, Y 2×2 (id 1) and Cb 1×1 (id 2).
        let frame = parse_frame(&[8, 0, 16, 0, 24, 2, 1, 0x22, 0, 2, 0x11, 1]).unwrap();
        assert_eq!((frame.width, frame.height), (24, 16));
        assert_eq!(frame.components[0], FrameComponent { id: 1, h: 2, v: 2 });
        let scan = parse_scan(&[2, 2, 0x11, 1, 0x00, 0, 63, 0], &frame).unwrap();
        assert_eq!(
            scan.components[0].component,
            FrameComponent { id: 2, h: 1, v: 1 }
        );
        assert_eq!(
            (scan.components[0].dc_table, scan.components[0].ac_table),
            (1, 1)
        );
        assert_eq!((scan.spectral_start, scan.spectral_end), (0, 63));
        assert!(parse_scan(&[1, 9, 0x00, 0, 63, 0], &frame).is_err());
        assert!(parse_frame(&[8, 0, 16, 0, 24, 1, 1, 0x52, 0]).is_err());
    }
}
