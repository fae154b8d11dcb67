//! Frames shared by the log file and the peer network: a little-endian u32 length, a
//! CRC32C of the body, the body.

use std::io;

/// The largest frame read back (a corrupt length must not allocate gigabytes).
pub(crate) const MAX_FRAME: usize = 256 << 20;

pub(crate) fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The header's length and checksum.
pub(crate) fn header(h: [u8; 8]) -> io::Result<(usize, u32)> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    Ok((len, crc))
}

pub(crate) fn check(body: &[u8], crc: u32) -> io::Result<()> {
    if crc32c::crc32c(body) == crc {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, "frame checksum"))
    }
}

/// Splits the next complete frame off `buf` at `*at`; None at a clean or torn end.
pub(crate) fn next<'a>(buf: &'a [u8], at: &mut usize) -> Option<io::Result<&'a [u8]>> {
    let h: [u8; 8] = buf.get(*at..*at + 8)?.try_into().ok()?;
    let (len, crc) = match header(h) {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let body = buf.get(*at + 8..*at + 8 + len)?;
    if let Err(e) = check(body, crc) {
        return Some(Err(e));
    }
    *at += 8 + len;
    Some(Ok(body))
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializable")
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
