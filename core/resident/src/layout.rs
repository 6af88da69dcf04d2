//! Storage-region layout, stage 1 (see docs/flash-layout.md): a config-record sector, a scratch sector
//! for overlays, then fixed slots, each holding at most one blob. Slots are independent, so one
//! corrupt slot never hides another.

/// Offset of the config record sector.
pub const CONFIG_OFFSET: u32 = 0;
/// Offset of the scratch sector overlays may rewrite.
pub const SCRATCH_OFFSET: u32 = 0x1000;
/// Offset of the first blob slot.
pub const SLOTS_OFFSET: u32 = 0x2000;
/// Size of each slot (the largest blob it holds).
pub const SLOT_SIZE: u32 = 0x2000;
/// Number of slots.
pub const SLOT_COUNT: u32 = 6;
/// Bytes of the storage region this layout uses.
pub const REGION_SIZE: u32 = SLOTS_OFFSET + SLOT_SIZE * SLOT_COUNT;

/// Magic of the config record.
pub const CONFIG_MAGIC: [u8; 4] = *b"RCFG";
/// Size of the config record's header (magic, boot count, length, checksum).
pub const CONFIG_HEADER: usize = 12;

/// Offsets of the slots, in order.
pub fn slots() -> impl Iterator<Item = u32> {
    (0..SLOT_COUNT).map(|i| SLOTS_OFFSET + i * SLOT_SIZE)
}

/// Encodes a config record into `out`; returns its length, or `None` if `out` is too small or the
/// payload longer than [`rota_abi::CONFIG_MAX`].
pub fn encode_config(boot_count: u32, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = CONFIG_HEADER + payload.len();
    if payload.len() > rota_abi::CONFIG_MAX || out.len() < len {
        return None;
    }
    let sum = payload
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
    out[..4].copy_from_slice(&CONFIG_MAGIC);
    out[4..8].copy_from_slice(&boot_count.to_le_bytes());
    out[8..10].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    out[10..12].copy_from_slice(&sum.to_le_bytes());
    out[CONFIG_HEADER..len].copy_from_slice(payload);
    Some(len)
}
