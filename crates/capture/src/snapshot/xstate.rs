//! The XSAVE area, rewritten into the layout gdb expects.
//!
//! `PTRACE_GETREGSET(NT_X86_XSTATE)` returns the standard (uncompacted)
//! XSAVE format, whose component offsets are the CPU's own (CPUID leaf
//! 0xD). gdb up to 13 assumes Intel's offsets; on CPUs that differ (AMD
//! Zen 4 has no MPX gap, so its AVX-512 state sits 256 bytes lower) it
//! warns "Section `.reg-xstate/TID' in core file too small" and would read
//! the AVX-512 registers from the wrong place. gdb's own `gcore` writes
//! Intel's layout, so we do too: every component gdb knows moves to its
//! Intel offset, components it does not know (AMX, CET, ...) are dropped
//! from the feature masks, and the area is cut to the size gdb computes
//! from those masks. On Intel CPUs this is a copy.

/// Components gdb knows, with Intel's offsets and sizes:
/// (feature bit, offset, size).
const KNOWN: [(u32, usize, usize); 7] = [
    (2, 576, 256),   // AVX (YMM high halves)
    (3, 960, 64),    // MPX bound registers
    (4, 1024, 64),   // MPX bound config
    (5, 1088, 64),   // AVX-512 opmask
    (6, 1152, 512),  // AVX-512 ZMM_Hi256
    (7, 1664, 1024), // AVX-512 Hi16_ZMM
    (9, 2688, 8),    // PKRU
];
/// Where the kernel puts XCR0 for debuggers (`sw_reserved`).
const XCR0_OFFSET: usize = 464;
/// `XSTATE_BV` and `XCOMP_BV` in the XSAVE header.
const XSTATE_BV_OFFSET: usize = 512;
const XCOMP_BV_OFFSET: usize = 520;
/// The legacy region plus the XSAVE header.
const LEGACY: usize = 576;

/// Rewrites `raw` (the CPU's layout) into Intel's, given the CPU's offset
/// of each component (`None` if it has none).
pub(crate) fn to_gdb_layout(raw: &[u8], cpu_offset: &dyn Fn(u32) -> Option<usize>) -> Vec<u8> {
    if raw.len() < LEGACY {
        return raw.to_vec();
    }
    let word = |off: usize| u64::from_le_bytes(raw[off..off + 8].try_into().unwrap_or([0; 8]));
    let xcr0 = word(XCR0_OFFSET);
    let mut kept: u64 = xcr0 & 0b11; // x87, SSE
    let mut size = LEGACY;
    for &(bit, off, len) in &KNOWN {
        let Some(cpu) = cpu_offset(bit) else { continue };
        if xcr0 & (1 << bit) != 0 && cpu + len <= raw.len() {
            kept |= 1 << bit;
            size = size.max(off + len);
        }
    }
    let mut out = vec![0u8; size];
    out[..LEGACY].copy_from_slice(&raw[..LEGACY]);
    for &(bit, off, len) in &KNOWN {
        if kept & (1 << bit) != 0 {
            if let Some(cpu) = cpu_offset(bit) {
                out[off..off + len].copy_from_slice(&raw[cpu..cpu + len]);
            }
        }
    }
    out[XCR0_OFFSET..XCR0_OFFSET + 8].copy_from_slice(&kept.to_le_bytes());
    let bv = word(XSTATE_BV_OFFSET) & kept;
    out[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
    out[XCOMP_BV_OFFSET..XCOMP_BV_OFFSET + 8].fill(0);
    out
}

/// The CPU's standard-format offset of component `bit` (CPUID 0xD.bit EBX).
#[cfg(target_arch = "x86_64")]
pub(crate) fn cpu_offset(bit: u32) -> Option<usize> {
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0xD sub-leaf `bit`
    // reports size 0 for components the CPU lacks. (Safe to call since
    // Rust 1.87; our MSRV still needs the block.)
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(0xd, bit) };
    (r.eax != 0).then_some(r.ebx as usize)
}

/// Not x86_64: no XSAVE.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn cpu_offset(_bit: u32) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zen4_layout_moves_avx512_up_and_drops_unknown_features() {
        // Zen 4: AVX 576, opmask 832, ZMM_Hi256 896, Hi16_ZMM 1408, PKRU 2432.
        let zen = |bit: u32| match bit {
            2 => Some(576),
            5 => Some(832),
            6 => Some(896),
            7 => Some(1408),
            9 => Some(2432),
            _ => None,
        };
        let mut raw = vec![0u8; 2440];
        let xcr0: u64 = 0xe7 | (1 << 9) | (1 << 17);
        raw[XCR0_OFFSET..XCR0_OFFSET + 8].copy_from_slice(&xcr0.to_le_bytes());
        raw[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&xcr0.to_le_bytes());
        raw[832] = 0x11; // k0
        raw[1408] = 0x22; // zmm16
        raw[2432] = 0x33; // pkru
        raw[600] = 0x44; // ymm0.hi
        let out = to_gdb_layout(&raw, &zen);
        assert_eq!(out.len(), 2696);
        assert_eq!(out[1088], 0x11);
        assert_eq!(out[1664], 0x22);
        assert_eq!(out[2688], 0x33);
        assert_eq!(out[600], 0x44);
        let kept = u64::from_le_bytes(out[XCR0_OFFSET..XCR0_OFFSET + 8].try_into().unwrap());
        assert_eq!(kept, 0xe7 | (1 << 9));
    }

    #[test]
    fn intel_layout_is_kept_and_short_input_passes_through() {
        let intel = |bit: u32| KNOWN.iter().find(|k| k.0 == bit).map(|k| k.1);
        let mut raw: Vec<u8> = (0..832).map(|i| i as u8).collect();
        raw[XCR0_OFFSET..XCR0_OFFSET + 8].copy_from_slice(&7u64.to_le_bytes());
        let out = to_gdb_layout(&raw, &intel);
        assert_eq!(out[576..832], raw[576..832]);
        assert_eq!(out.len(), 832);
        assert_eq!(to_gdb_layout(&[1, 2, 3], &intel), vec![1, 2, 3]);
    }
}
