#!/usr/bin/env python3
"""Experiment only: turn the overlay-demo ELF into a flash-window image for the board's demo loader.

Usage: mkflash.py OVERLAY.elf OUT.bin [WINDOW_SIZE]

Reads the ELF (linked at 0 by linker/overlay-xtensa.x with -q), takes the loadable image
(.text + .rodata, contiguous from address 0), lists the R_XTENSA_32 words of .rela.text/.rela.rodata,
refuses any other relocation type except the PC-relative R_XTENSA_SLOT0_OP (and R_XTENSA_NONE), and
writes an erased (0xFF) window with one demo record at offset 0 (all little-endian u32):

    magic "RXO1", image_len, entry_offset, n_relocs, relocs[n_relocs], image (padded to 4)

It prints every relocation with the word it patches, to show that the word holds S + A.
The real blob format and packer are rota-blob / tools/pack; this is only the relocation proof.
"""
import struct
import sys

R_XTENSA_NONE, R_XTENSA_32, R_XTENSA_SLOT0_OP = 0, 1, 20
SHT_SYMTAB, SHT_RELA, SHF_ALLOC = 2, 4, 2


def main():
    elf_path, out_path = sys.argv[1], sys.argv[2]
    window = int(sys.argv[3], 0) if len(sys.argv) > 3 else 0x80000
    data = open(elf_path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 1 and data[5] == 1, "need ELF32 little-endian"
    (e_shoff,) = struct.unpack_from("<I", data, 0x20)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    secs = []
    for i in range(e_shnum):
        secs.append(struct.unpack_from("<IIIIIIIIII", data, e_shoff + i * e_shentsize))
    shstr = secs[e_shstrndx]

    def name(sec):
        off = shstr[4] + sec[0]
        return data[off:data.index(b"\0", off)].decode()

    by_name = {name(s): s for s in secs}
    text, rodata = by_name[".text"], by_name[".rodata"]
    assert text[3] == 0, ".text must be linked at 0"
    for bad in (".data", ".bss"):
        assert bad not in by_name or by_name[bad][5] == 0, f"overlay has {bad}"
    end = rodata[3] + rodata[5]
    image = bytearray(end)
    for s in (text, rodata):
        image[s[3]:s[3] + s[5]] = data[s[4]:s[4] + s[5]]
    image += b"\0" * (-len(image) % 4)

    symtab = next(s for s in secs if s[1] == SHT_SYMTAB)
    strtab = secs[symtab[6]]
    entry = None
    for i in range(symtab[5] // 16):
        st_name, st_value, _, _, _, _ = struct.unpack_from("<IIIBBH", data, symtab[4] + 16 * i)
        off = strtab[4] + st_name
        if data[off:data.index(b"\0", off)] == b"rota_overlay_entry":
            entry = st_value
    assert entry is not None, "no rota_overlay_entry"

    relocs = []
    seen = {}
    for s in secs:
        if s[1] != SHT_RELA or not (secs[s[7]][2] & SHF_ALLOC):
            continue
        target = name(secs[s[7]])
        for i in range(s[5] // 12):
            r_offset, r_info, r_addend = struct.unpack_from("<IIi", data, s[4] + 12 * i)
            rtype = r_info & 0xFF
            seen[(target, rtype)] = seen.get((target, rtype), 0) + 1
            if rtype == R_XTENSA_32:
                assert r_offset % 4 == 0, f"unaligned R_XTENSA_32 at {r_offset:#x}"
                (word,) = struct.unpack_from("<I", image, r_offset)
                print(f"  R_XTENSA_32      {target:8} @ {r_offset:#06x}: word {word:#06x}, "
                      f"r_addend {r_addend:#x} (sym #{r_info >> 8})")
                relocs.append(r_offset)
            elif rtype in (R_XTENSA_SLOT0_OP, R_XTENSA_NONE):
                pass
            else:
                sys.exit(f"unexpected relocation type {rtype} at {r_offset:#x} in {target}")
    for (target, rtype), n in sorted(seen.items()):
        print(f"  {target}: type {rtype} x{n}")
    print(f"  image {len(image)} bytes, entry {entry:#x}, {len(relocs)} R_XTENSA_32 words")

    relocs.sort()
    record = b"RXO1" + struct.pack("<III", len(image), entry, len(relocs))
    record += b"".join(struct.pack("<I", r) for r in relocs) + bytes(image)
    assert len(record) <= window
    out = record + b"\xff" * (window - len(record))
    open(out_path, "wb").write(out)


if __name__ == "__main__":
    main()
