//! Whether a sequential Huffman JPEG's entropy-coded data has exactly the
//! layout its headers promise: every block's Huffman codes valid, no block
//! with more than 64 coefficients, restart markers where the restart
//! interval puts them, and the data ending with the last block. Damage to
//! the entropy data (a zeroed or overwritten run) throws the decoder out of
//! step; lenient decoders repaint the rest of the picture and skip whatever
//! data is left over, but the codes after the damage no longer add up to the
//! promised blocks, so this walk finds it without decoding a pixel.
//!
//! Progressive, lossless, hierarchical and arithmetic-coded files are not
//! walked ([`Walk::NotChecked`]).

use std::collections::BTreeMap;

use super::jpeg_segments::{
    parse_frame, parse_huffman_tables, parse_scan, u16_at, Frame, HuffmanTable, Scan,
};

/// What the walk found when nothing was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Every scan's data holds exactly its blocks.
    Consistent,
    /// A coding process this walk does not follow.
    NotChecked(&'static str),
}

/// Walks the markers of `bytes` (a JPEG file) and the entropy data of each
/// scan. `Err` says in words what is inconsistent.
pub(crate) fn walk(bytes: &[u8]) -> Result<Walk, String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("no start-of-image marker".into());
    }
    let mut at = 2usize;
    let mut frame: Option<Frame> = None;
    let mut tables: BTreeMap<(u8, u8), HuffmanTable> = BTreeMap::new();
    let mut restart_interval = 0u16;
    let mut scans = 0usize;
    loop {
        // A marker: 0xFF, any number of 0xFF fill bytes, then the code.
        match bytes.get(at) {
            Some(0xFF) => {}
            Some(byte) => {
                return Err(format!(
                    "stray byte 0x{byte:02X} where a marker belongs (offset {at})"
                ))
            }
            None => return Err("the file ends without an end-of-image marker".into()),
        }
        while bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let code = *bytes
            .get(at + 1)
            .ok_or("the file ends without an end-of-image marker")?;
        at += 2;
        match code {
            0xD9 if scans > 0 => return Ok(Walk::Consistent),
            0xD9 => return Err("end of image before any scan".into()),
            // Parameterless markers; a restart marker after a scan's last
            // interval is written by some encoders and ignored by libjpeg.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0x00 => return Err(format!("marker 0x{code:02X} inside the file")),
            _ => {}
        }
        let length = usize::from(u16_at(bytes, at).ok_or("a segment runs past the end")?);
        let body = bytes
            .get(at + 2..at + length.max(2))
            .filter(|_| length >= 2)
            .ok_or("a segment runs past the end")?;
        at += length;
        match code {
            0xC0 | 0xC1 => {
                let parsed = parse_frame(body)?;
                if parsed.height == 0 {
                    return Ok(Walk::NotChecked("height defined by a DNL marker"));
                }
                frame = Some(parsed);
            }
            0xC2 => return Ok(Walk::NotChecked("progressive")),
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Ok(Walk::NotChecked(
                    "lossless, hierarchical or arithmetic coding",
                ))
            }
            0xC4 => {
                for (class, slot, table) in parse_huffman_tables(body)? {
                    tables.insert((class, slot), table);
                }
            }
            0xDD => restart_interval = u16_at(body, 0).ok_or("short restart interval")?,
            0xDA => {
                let frame = frame.as_ref().ok_or("a scan before the frame header")?;
                let scan = parse_scan(body, frame)?;
                match walk_scan(bytes, at, frame, &scan, &tables, restart_interval)? {
                    Some(end) => at = end,
                    None => return Ok(Walk::NotChecked("Huffman tables left out (Motion-JPEG)")),
                }
                scans += 1;
            }
            _ => {} // APPn, COM, DQT, JPGn and the like: skipped by length.
        }
    }
}

/// Reads entropy-coded bits: removes stuffed zero bytes and stops at a marker.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
    buffer: u32,
    count: u32,
}

/// A marker (other than a stuffed 0xFF00) met while bits were still needed.
struct MarkerReached;

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, MarkerReached> {
        if self.count == 0 {
            let byte = *self.bytes.get(self.at).ok_or(MarkerReached)?;
            if byte == 0xFF {
                if self.bytes.get(self.at + 1) != Some(&0x00) {
                    return Err(MarkerReached);
                }
                self.at += 1;
            }
            self.at += 1;
            self.buffer = u32::from(byte);
            self.count = 8;
        }
        self.count -= 1;
        Ok((self.buffer >> self.count) & 1)
    }

    fn skip(&mut self, n: u8) -> Result<(), MarkerReached> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    fn decode(&mut self, table: &HuffmanTable) -> Result<Option<u8>, MarkerReached> {
        let mut code: i32 = 0;
        for l in 0..16 {
            code = (code << 1) | self.bit()? as i32;
            if code <= table.max_code[l] {
                let index = code + table.offset[l];
                return Ok(usize::try_from(index)
                    .ok()
                    .and_then(|i| table.symbols.get(i).copied()));
            }
        }
        Ok(None)
    }

    /// Drops the bits left in the current byte (the padding before a marker).
    fn align(&mut self) {
        self.count = 0;
    }
}

/// The number of MCUs of a scan, and the blocks each scan component has in
/// one MCU (in scan order).
fn layout(frame: &Frame, scan: &Scan) -> (u64, Vec<u64>) {
    let h_max = frame.components.iter().map(|c| c.h).max().unwrap_or(1);
    let v_max = frame.components.iter().map(|c| c.v).max().unwrap_or(1);
    let (w, h) = (u64::from(frame.width), u64::from(frame.height));
    if let [only] = scan.components.as_slice() {
        // Non-interleaved: one block per MCU over the component's own size.
        let c = only.component;
        let cw = (w * u64::from(c.h)).div_ceil(u64::from(h_max));
        let ch = (h * u64::from(c.v)).div_ceil(u64::from(v_max));
        return (cw.div_ceil(8) * ch.div_ceil(8), vec![1]);
    }
    let mcus = w.div_ceil(8 * u64::from(h_max)) * h.div_ceil(8 * u64::from(v_max));
    let blocks = scan
        .components
        .iter()
        .map(|sc| u64::from(sc.component.h) * u64::from(sc.component.v))
        .collect();
    (mcus, blocks)
}

/// Walks one scan's entropy data from `start`; returns where its data ends
/// (the next marker), or `None` when the scan cannot be walked.
fn walk_scan(
    bytes: &[u8],
    start: usize,
    frame: &Frame,
    scan: &Scan,
    tables: &BTreeMap<(u8, u8), HuffmanTable>,
    restart_interval: u16,
) -> Result<Option<usize>, String> {
    // A sequential scan's spectral selection and approximation bytes are
    // meaningless (some encoders write zeros there); decoders read whole
    // 64-coefficient blocks whatever they say, and so does this walk.
    let mut coders = Vec::with_capacity(scan.components.len());
    for sc in &scan.components {
        let dc = tables.get(&(0, sc.dc_table));
        let ac = tables.get(&(1, sc.ac_table));
        match (dc, ac) {
            (Some(dc), Some(ac)) => coders.push((dc, ac)),
            // Motion-JPEG frames leave out their tables (the standard ones
            // of T.81 Annex K are implied): not walked.
            _ => return Ok(None),
        }
    }
    // Largest magnitude categories (T.81 F.1.2): 11 / 10 at 8 bits, 15 / 14 at 12.
    let (max_dc, max_ac) = if frame.precision == 12 {
        (15, 14)
    } else {
        (11, 10)
    };
    let (mcus, blocks) = layout(frame, scan);
    let per_mcu: Vec<_> = coders.into_iter().zip(blocks).collect();
    let mut bits = Bits {
        bytes,
        at: start,
        buffer: 0,
        count: 0,
    };
    let mut done = 0u64;
    let mut restarts = 0u8;
    let out_of_step = |done: u64| {
        format!("the scan's data ends after {done} of its {mcus} MCUs: its codes are out of step")
    };
    while done < mcus {
        if restart_interval > 0 && done > 0 && done.is_multiple_of(u64::from(restart_interval)) {
            bits.align();
            let expected = 0xD0 + restarts;
            // 0xFF fill bytes may precede any marker (T.81 B.1.1.2).
            while bytes.get(bits.at..bits.at + 2) == Some(&[0xFF, 0xFF][..]) {
                bits.at += 1;
            }
            if bytes.get(bits.at..bits.at + 2) != Some(&[0xFF, expected][..]) {
                return Err(format!(
                    "restart marker RST{restarts} missing after {done} MCUs: its codes are out of step"
                ));
            }
            bits.at += 2;
            restarts = (restarts + 1) % 8;
        }
        for &((dc, ac), count) in &per_mcu {
            for _ in 0..count {
                let category = bits.decode(dc).map_err(|_| out_of_step(done))?;
                match category {
                    Some(s) if s <= max_dc => bits.skip(s).map_err(|_| out_of_step(done))?,
                    _ => return Err(format!("an invalid DC code in MCU {done}")),
                }
                let mut k = 1u32;
                while k < 64 {
                    let symbol = bits.decode(ac).map_err(|_| out_of_step(done))?;
                    let Some(rs) = symbol else {
                        return Err(format!("an invalid AC code in MCU {done}"));
                    };
                    let (run, size) = (u32::from(rs >> 4), rs & 0x0F);
                    if size == 0 {
                        if run != 15 {
                            break; // end of block
                        }
                        k += 16;
                        continue;
                    }
                    k += run;
                    if k > 63 || size > max_ac {
                        return Err(format!(
                            "a block of MCU {done} has coefficients past the 64th"
                        ));
                    }
                    bits.skip(size).map_err(|_| out_of_step(done))?;
                    k += 1;
                }
                if k > 64 {
                    return Err(format!(
                        "a block of MCU {done} has coefficients past the 64th"
                    ));
                }
            }
        }
        done += 1;
    }
    bits.align();
    // The data must end here: the next bytes are a marker (after optional
    // 0xFF fill bytes); anything else is data no block accounts for.
    let mut end = bits.at;
    let mut leftover = 0usize;
    loop {
        match (bytes.get(end), bytes.get(end + 1)) {
            (Some(0xFF), Some(0x00)) => {
                leftover += 1;
                end += 2;
            }
            (Some(0xFF), Some(_)) => break,
            (Some(_), _) => {
                leftover += 1;
                end += 1;
            }
            (None, _) => return Err("the file ends inside the scan's data".into()),
        }
    }
    if leftover > 0 {
        return Err(format!(
            "{leftover} bytes of entropy data after the last of {mcus} MCUs: its codes are out of step"
        ));
    }
    Ok(Some(end))
}

#[cfg(test)]
#[path = "jpeg_entropy_tests.rs"]
mod tests;
