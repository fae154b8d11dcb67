//! A job body behind a thin (8-byte) pointer. Jobs are the bulk of the server's memory:
//!
//! - a small body (under 64 KiB) is one allocation holding a 4-byte length and the bytes,
//!   copied out of the read buffer;
//! - a large body keeps the `Bytes` it arrived in (no copy), boxed; replies share it, so
//!   reserving a 100 MB job copies nothing while the engine lock is held.
//!
//! The pointer's low bit tells the two apart (both allocations are at least 4-aligned).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

use bytes::Bytes;

pub struct Body {
    ptr: NonNull<u8>,
}

// SAFETY: Body owns its allocation (or its boxed Bytes, which is Send + Sync) exclusively.
unsafe impl Send for Body {}
// SAFETY: shared access is read-only.
unsafe impl Sync for Body {}

const LEN: usize = 4;
const LARGE_TAG: usize = 1;
/// Bodies at least this big are kept as `Bytes`.
pub const LARGE: usize = 64 * 1024;

fn layout(len: usize) -> Layout {
    match Layout::from_size_align(LEN + len, 4) {
        Ok(l) => l,
        Err(_) => panic!("job body of {len} bytes exceeds the address space"),
    }
}

impl Body {
    /// Copies `data` into a small body (any size works; large ones prefer `from_bytes`).
    pub fn new(data: &[u8]) -> Body {
        let len = u32::try_from(data.len()).unwrap_or_else(|_| panic!("job body too large"));
        let l = layout(data.len());
        // SAFETY: the layout has non-zero size (LEN > 0); we write exactly LEN + len bytes.
        unsafe {
            let p = alloc(l);
            let Some(ptr) = NonNull::new(p) else {
                handle_alloc_error(l)
            };
            std::ptr::copy_nonoverlapping(len.to_ne_bytes().as_ptr(), p, LEN);
            std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(LEN), data.len());
            Body { ptr }
        }
    }

    /// Takes a body as read: large ones are kept without copying.
    pub fn from_bytes(b: Bytes) -> Body {
        if b.len() < LARGE {
            return Body::new(&b);
        }
        let raw = Box::into_raw(Box::new(b)) as *mut u8;
        // SAFETY: Box never returns null; the tag bit is free (Bytes is 8-aligned).
        let tagged = raw.map_addr(|a| a | LARGE_TAG);
        Body {
            ptr: unsafe { NonNull::new_unchecked(tagged) },
        }
    }

    fn large(&self) -> Option<&Bytes> {
        let p = self.ptr.as_ptr();
        if p.addr() & LARGE_TAG == 0 {
            return None;
        }
        // SAFETY: a tagged pointer came from Box<Bytes>::into_raw in `from_bytes`.
        Some(unsafe { &*(p.map_addr(|a| a & !LARGE_TAG) as *const Bytes) })
    }

    pub fn len(&self) -> usize {
        if let Some(b) = self.large() {
            return b.len();
        }
        let mut b = [0u8; LEN];
        // SAFETY: a small body's allocation starts with LEN length bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), b.as_mut_ptr(), LEN) };
        u32::from_ne_bytes(b) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        if let Some(b) = self.large() {
            return b;
        }
        // SAFETY: len bytes follow the length prefix and live as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(LEN), self.len()) }
    }

    /// The body for a reply: a copy of a small body, a shared handle on a large one.
    pub fn to_bytes(&self) -> Bytes {
        match self.large() {
            Some(b) => b.clone(),
            None => Bytes::copy_from_slice(self.as_slice()),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let p = self.ptr.as_ptr();
        if p.addr() & LARGE_TAG != 0 {
            // SAFETY: undoes `from_bytes`.
            drop(unsafe { Box::from_raw(p.map_addr(|a| a & !LARGE_TAG) as *mut Bytes) });
            return;
        }
        let l = layout(self.len());
        // SAFETY: allocated in `new` with this same layout.
        unsafe { dealloc(p, l) }
    }
}

impl Clone for Body {
    fn clone(&self) -> Body {
        match self.large() {
            Some(b) => Body::from_bytes(b.clone()),
            None => Body::new(self.as_slice()),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.len())
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.as_slice() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sizes() {
        for data in [
            &b""[..],
            b"x",
            b"a\r\n\0b",
            &[7u8; 70000],
            &[9u8; LARGE - 1],
        ] {
            for b in [
                Body::new(data),
                Body::from_bytes(Bytes::copy_from_slice(data)),
            ] {
                assert_eq!(b.as_slice(), data);
                assert_eq!(b.len(), data.len());
                assert_eq!(b.clone(), b);
                assert_eq!(&b.to_bytes()[..], data);
            }
        }
        assert_eq!(std::mem::size_of::<Body>(), 8);
        assert_eq!(std::mem::size_of::<Option<Body>>(), 8);
    }

    #[test]
    fn large_bodies_are_shared_not_copied() {
        let src = Bytes::from(vec![1u8; LARGE]);
        let b = Body::from_bytes(src.clone());
        assert_eq!(b.to_bytes().as_ptr(), src.as_ptr());
    }
}
