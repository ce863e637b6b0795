//! GUID partition tables, written by hand: the format is small and fixed (UEFI 2.10 §5),
//! and writing it ourselves puts every byte (GUIDs, CRCs, the protective MBR's boot code)
//! under forge's control, which a partitioning tool run on a file does not promise.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors the partition entry array takes (128 × 128 bytes).
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Linux root (x86-64) from the Discoverable Partitions Specification, so
/// systemd-repart can find and grow it.
pub const ROOT_X86_64_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// Attribute bit 2: legacy BIOS bootable (what syslinux's gptmbr.bin looks for).
pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// A GUID in its usual text order (`C12A7328-...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub fn parse(s: &str) -> Option<Self> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// On-disk form: the first three fields little-endian.
    fn to_disk(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// One partition.
#[derive(Debug, Clone)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

fn entries(parts: &[Partition]) -> Vec<u8> {
    let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_disk());
        e[16..32].copy_from_slice(&p.guid.to_disk());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    out
}

fn header(
    disk_guid: Guid,
    my_lba: u64,
    alt_lba: u64,
    last_usable: u64,
    entries_lba: u64,
    entries_crc: u32,
) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&disk_guid.to_disk());
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Last usable LBA of a disk of `size` bytes.
pub fn last_usable_lba(size: u64) -> u64 {
    size / SECTOR - 1 - ENTRY_SECTORS - 1
}

/// Writes the protective MBR (with `boot_code` in its first 440 bytes), the primary GPT and
/// the backup GPT of a disk of `size` bytes into `file`.
pub fn write(
    file: &mut File,
    size: u64,
    disk_guid: Guid,
    parts: &[Partition],
    boot_code: Option<&[u8]>,
) -> io::Result<()> {
    let sectors = size / SECTOR;
    let last = sectors - 1;
    for p in parts {
        if p.first_lba < 2 + ENTRY_SECTORS
            || p.last_lba > last_usable_lba(size)
            || p.first_lba > p.last_lba
        {
            return Err(io::Error::other(format!(
                "partition `{}` does not fit the disk",
                p.name
            )));
        }
    }
    let mut mbr = [0u8; 512];
    if let Some(code) = boot_code {
        let n = code.len().min(440);
        mbr[..n].copy_from_slice(&code[..n]);
    }
    // One partition of type 0xEE covering the disk.
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    pe[12..16].copy_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let table = entries(parts);
    let crc = crc32fast::hash(&table);
    let last_usable = last_usable_lba(size);
    let primary = header(disk_guid, 1, last, last_usable, 2, crc);
    let backup_entries_lba = last - ENTRY_SECTORS;
    let backup = header(disk_guid, last, 1, last_usable, backup_entries_lba, crc);

    file.seek(SeekFrom::Start(0))?;
    file.write_all(&mbr)?;
    file.write_all(&primary)?;
    file.write_all(&table)?;
    file.seek(SeekFrom::Start(backup_entries_lba * SECTOR))?;
    file.write_all(&table)?;
    file.write_all(&backup)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_and_disk_order() {
        let g = Guid::parse(ESP_TYPE).unwrap();
        assert_eq!(g.to_string(), ESP_TYPE.to_lowercase());
        assert_eq!(&g.to_disk()[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert!(Guid::parse("xyz").is_none());
    }

    #[test]
    fn table_is_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut f = File::create(&path).unwrap();
        let size = 64 << 20;
        f.set_len(size).unwrap();
        let g = Guid::parse("8A1D4C52-0000-4000-8000-000000000001").unwrap();
        let parts = [Partition {
            type_guid: Guid::parse(ROOT_X86_64_TYPE).unwrap(),
            guid: g,
            first_lba: 2048,
            last_lba: last_usable_lba(size),
            attributes: 0,
            name: "root".into(),
        }];
        write(&mut f, size, g, &parts, Some(&[0x90; 440])).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[512..520], b"EFI PART");
        let last = (size / 512 - 1) as usize * 512;
        assert_eq!(&bytes[last..last + 8], b"EFI PART");
        // Header CRC checks out.
        let mut h = bytes[512..604].to_vec();
        let stored = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        h[16..20].copy_from_slice(&[0; 4]);
        assert_eq!(crc32fast::hash(&h), stored);
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
        assert_eq!(bytes[0], 0x90);
        // Too large a partition is refused.
        let bad = [Partition {
            last_lba: size / 512,
            ..parts[0].clone()
        }];
        assert!(write(&mut f, size, g, &bad, None).is_err());
    }
}
