"""Boot images for the firmware tests, built from scratch in Python.

The boot sector is 16-bit real-mode code assembled here byte by byte. It
prints "VMMD-BOOT: hello" to COM1 by port I/O, reads further sectors through
the BIOS disk services (INT 13h AH=42h, extended read), sums their bytes and
prints "VMMD-BOOT: checksum ok" (or "checksum bad" / "read error"), then
halts. The same code serves a hard disk (data at LBA 1, 512-byte sectors) and
an El Torito no-emulation CD (data in the 2048-byte sectors after the boot
image, whose own LBA it finds in the boot-info table xorriso writes at
offset 8).

Images: raw disk, qcow2 disk (qemu-img convert), ISO (xorriso -as mkisofs).
"""

import os
import random
import shutil
import struct
import subprocess

HELLO = "VMMD-BOOT: hello"
OK = "VMMD-BOOT: checksum ok"
BAD = "VMMD-BOOT: checksum bad"
READ_ERROR = "VMMD-BOOT: read error"

DATA_LEN = 4096
BASE = 0x7C00
PARAMS = 0x1F0  # dword start LBA, word count, word length, word checksum, byte mode, byte drive


class Asm:
    """A tiny two-pass assembler: bytes plus rel8 / abs16 label fixups."""

    def __init__(self, origin):
        self.origin = origin
        self.code = bytearray()
        self.labels = {}
        self.fixups = []

    def here(self):
        return self.origin + len(self.code)

    def label(self, name):
        self.labels[name] = self.here()

    def b(self, *bs):
        self.code += bytes(bs)

    def rel8(self, opcode, name):
        self.code += bytes([opcode, 0])
        self.fixups.append(("rel8", len(self.code) - 1, name))

    def call(self, name):
        self.code += bytes([0xE8, 0, 0])
        self.fixups.append(("rel16", len(self.code) - 2, name))

    def imm16(self, prefix, name):
        self.code += bytes(prefix) + b"\0\0"
        self.fixups.append(("abs16", len(self.code) - 2, name))

    def string(self, name, text):
        self.label(name)
        self.code += text.encode() + b"\r\n\0"

    def link(self):
        for kind, at, name in self.fixups:
            target = self.labels[name]
            if kind == "rel8":
                d = target - (self.origin + at + 1)
                assert -128 <= d < 128, name
                self.code[at] = d & 0xFF
            elif kind == "rel16":
                d = target - (self.origin + at + 2)
                self.code[at:at + 2] = struct.pack("<h", d)
            else:
                self.code[at:at + 2] = struct.pack("<H", target)
        return bytes(self.code)


def boot_sector(start_lba, count, length, checksum, relative):
    """512 bytes: the boot code and its parameters (see the module doc)."""
    p = BASE + PARAMS
    a = Asm(BASE + 0x40)
    # CS:IP may be 0:7C00 or 07C0:0000 (CD boot): the far jump at offset 0 fixes CS = 0.
    a.b(0xFA)                                # cli
    a.b(0x31, 0xC0)                          # xor ax,ax
    a.b(0x8E, 0xD8)                          # mov ds,ax
    a.b(0x8E, 0xC0)                          # mov es,ax
    a.b(0x8E, 0xD0)                          # mov ss,ax
    a.b(0xBC, 0x00, 0x7C)                    # mov sp,0x7c00
    a.b(0xFB, 0xFC)                          # sti; cld
    a.b(0x88, 0x16, *struct.pack("<H", p + 11))  # mov [drive],dl
    a.imm16([0xBE], "hello")                 # mov si,hello
    a.call("print")
    # Disk address packet at 0x0600: size 16, count, buffer 1000:0000, LBA
    a.b(0xC7, 0x06, 0x00, 0x06, 0x10, 0x00)  # mov word [0x600],16
    a.b(0xA1, *struct.pack("<H", p + 4))     # mov ax,[count]
    a.b(0xA3, 0x02, 0x06)                    # mov [0x602],ax
    a.b(0xC7, 0x06, 0x04, 0x06, 0x00, 0x00)  # mov word [0x604],0
    a.b(0xC7, 0x06, 0x06, 0x06, 0x00, 0x10)  # mov word [0x606],0x1000
    a.b(0x66, 0xA1, *struct.pack("<H", p))   # mov eax,[start]
    a.b(0x80, 0x3E, *struct.pack("<H", p + 10), 0x00)  # cmp byte [mode],0
    a.rel8(0x74, "absolute")                 # je absolute
    a.b(0x66, 0x03, 0x06, *struct.pack("<H", BASE + 12))  # add eax,[bi_file]
    a.label("absolute")
    a.b(0x66, 0xA3, 0x08, 0x06)              # mov [0x608],eax
    a.b(0x66, 0xC7, 0x06, 0x0C, 0x06, 0, 0, 0, 0)  # mov dword [0x60c],0
    a.b(0xBE, 0x00, 0x06)                    # mov si,0x600
    a.b(0x8A, 0x16, *struct.pack("<H", p + 11))  # mov dl,[drive]
    a.b(0xB4, 0x42)                          # mov ah,0x42
    a.b(0xCD, 0x13)                          # int 0x13
    a.rel8(0x72, "read_error")               # jc read_error
    # Sum the bytes at 1000:0000
    a.b(0xB8, 0x00, 0x10)                    # mov ax,0x1000
    a.b(0x8E, 0xC0)                          # mov es,ax
    a.b(0x31, 0xF6)                          # xor si,si
    a.b(0x31, 0xDB)                          # xor bx,bx
    a.b(0x8B, 0x0E, *struct.pack("<H", p + 6))  # mov cx,[length]
    a.label("sum")
    a.b(0x26, 0x8A, 0x04)                    # mov al,[es:si]
    a.b(0x30, 0xE4)                          # xor ah,ah
    a.b(0x01, 0xC3)                          # add bx,ax
    a.b(0x46)                                # inc si
    a.rel8(0xE2, "sum")                      # loop sum
    a.b(0x3B, 0x1E, *struct.pack("<H", p + 8))  # cmp bx,[checksum]
    a.rel8(0x75, "bad")                      # jne bad
    a.imm16([0xBE], "ok")                    # mov si,ok
    a.rel8(0xEB, "report")                   # jmp report
    a.label("bad")
    a.imm16([0xBE], "bad_msg")               # mov si,bad
    a.rel8(0xEB, "report")
    a.label("read_error")
    a.imm16([0xBE], "err_msg")               # mov si,err
    a.label("report")
    a.call("print")
    a.label("halt")
    a.b(0xFA, 0xF4)                          # cli; hlt
    a.rel8(0xEB, "halt")
    # print: the NUL-terminated string at si to COM1, polling LSR.THRE
    a.label("print")
    a.b(0xAC)                                # lodsb
    a.b(0x08, 0xC0)                          # or al,al
    a.rel8(0x74, "print_done")               # jz done
    a.b(0x88, 0xC4)                          # mov ah,al
    a.b(0xBA, 0xFD, 0x03)                    # mov dx,0x3fd
    a.label("thre")
    a.b(0xEC)                                # in al,dx
    a.b(0xA8, 0x20)                          # test al,0x20
    a.rel8(0x74, "thre")                     # jz thre
    a.b(0x88, 0xE0)                          # mov al,ah
    a.b(0xBA, 0xF8, 0x03)                    # mov dx,0x3f8
    a.b(0xEE)                                # out dx,al
    a.rel8(0xEB, "print")
    a.label("print_done")
    a.b(0xC3)                                # ret
    a.string("hello", HELLO)
    a.string("ok", OK)
    a.string("bad_msg", BAD)
    a.string("err_msg", READ_ERROR)
    code = a.link()

    sec = bytearray(512)
    sec[0:5] = bytes([0xEA]) + struct.pack("<HH", BASE + 0x40, 0)  # jmp 0000:7C40
    assert 0x40 + len(code) <= PARAMS, "boot code too long"
    sec[0x40:0x40 + len(code)] = code
    sec[PARAMS:PARAMS + 11] = struct.pack("<IHHHB", start_lba, count, length, checksum,
                                          1 if relative else 0)
    sec[510:512] = b"\x55\xAA"
    return bytes(sec)


KEY_READY = "VMMD-KBD: ready"
KEY_PREFIX = "VMMD-KEY: "


def keyboard_sector():
    """512 bytes: print KEY_READY on COM1, then for every key from INT 16h AH=00h
    print KEY_PREFIX, the character and its scancode in hex, forever."""
    a = Asm(BASE + 0x40)
    a.b(0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0)  # cli; xor ax,ax; ds=es=ss=0
    a.b(0xBC, 0x00, 0x7C)                    # mov sp,0x7c00
    a.b(0xFB, 0xFC)                          # sti; cld
    a.imm16([0xBE], "ready")                 # mov si,ready
    a.call("print")
    a.label("next")
    a.b(0xB4, 0x00)                          # mov ah,0
    a.b(0xCD, 0x16)                          # int 0x16
    a.b(0x50)                                # push ax
    a.imm16([0xBE], "prefix")                # mov si,prefix
    a.call("print")
    a.b(0x58, 0x50)                          # pop ax; push ax
    a.call("putc")                           # the character
    a.b(0xB0, 0x20)                          # mov al,' '
    a.call("putc")
    a.b(0x58)                                # pop ax
    a.b(0x88, 0xE0)                          # mov al,ah (scancode)
    a.b(0x50)                                # push ax
    a.b(0xC0, 0xE8, 0x04)                    # shr al,4
    a.call("hexdigit")
    a.b(0x58)                                # pop ax
    a.b(0x24, 0x0F)                          # and al,0x0f
    a.call("hexdigit")
    a.imm16([0xBE], "crlf")                  # mov si,crlf
    a.call("print")
    a.rel8(0xEB, "next")
    # hexdigit: al (0..15) as a hex digit
    a.label("hexdigit")
    a.b(0x04, 0x30)                          # add al,'0'
    a.b(0x3C, 0x39)                          # cmp al,'9'
    a.rel8(0x76, "hex_out")                  # jbe
    a.b(0x04, 0x07)                          # add al,7
    a.label("hex_out")
    a.call("putc")
    a.b(0xC3)
    # print: NUL-terminated string at si
    a.label("print")
    a.b(0xAC)                                # lodsb
    a.b(0x08, 0xC0)                          # or al,al
    a.rel8(0x74, "print_done")
    a.call("putc")
    a.rel8(0xEB, "print")
    a.label("print_done")
    a.b(0xC3)
    # putc: al to COM1, polling LSR.THRE
    a.label("putc")
    a.b(0x50, 0x52)                          # push ax; push dx
    a.b(0x88, 0xC4)                          # mov ah,al
    a.b(0xBA, 0xFD, 0x03)                    # mov dx,0x3fd
    a.label("thre")
    a.b(0xEC, 0xA8, 0x20)                    # in al,dx; test al,0x20
    a.rel8(0x74, "thre")
    a.b(0x88, 0xE0)                          # mov al,ah
    a.b(0xBA, 0xF8, 0x03)                    # mov dx,0x3f8
    a.b(0xEE)                                # out dx,al
    a.b(0x5A, 0x58, 0xC3)                    # pop dx; pop ax; ret
    a.string("ready", KEY_READY)
    a.label("prefix")
    a.code += KEY_PREFIX.encode() + b"\0"
    a.label("crlf")
    a.code += b"\r\n\0"
    code = a.link()
    sec = bytearray(512)
    sec[0:5] = bytes([0xEA]) + struct.pack("<HH", BASE + 0x40, 0)  # jmp 0000:7C40
    sec[0x40:0x40 + len(code)] = code
    sec[510:512] = b"\x55\xAA"
    return bytes(sec)


def make_keyboard_disk(path, size=1 << 20):
    with open(path, "wb") as f:
        f.write(keyboard_sector())
        f.truncate(size)
    return path


def payload(seed=8):
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(DATA_LEN))
    return data, sum(data) & 0xFFFF


def make_raw_disk(path, size=1 << 20):
    """A raw disk: the boot sector at LBA 0, DATA_LEN bytes of data from LBA 1."""
    data, csum = payload()
    with open(path, "wb") as f:
        f.write(boot_sector(1, DATA_LEN // 512, DATA_LEN, csum, False))
        f.write(data)
        f.truncate(size)
    return path


def make_qcow2_disk(path, tmpdir):
    raw = os.path.join(tmpdir, "for-qcow2.raw")
    make_raw_disk(raw)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, path],
                   check=True, capture_output=True)
    os.unlink(raw)
    return path


def make_iso(path, tmpdir):
    """An ISO 9660 image with an El Torito no-emulation boot image and data behind it."""
    data, csum = payload()
    root = os.path.join(tmpdir, "iso-root")
    os.makedirs(root, exist_ok=True)
    img = bytearray(boot_sector(1, DATA_LEN // 2048, DATA_LEN, csum, True))
    img += bytes(2048 - len(img))
    img += data
    with open(os.path.join(root, "boot.img"), "wb") as f:
        f.write(img)
    with open(os.path.join(root, "README.TXT"), "w") as f:
        f.write("vmmd firmware test\n")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", path, "-b", "boot.img",
                    "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", root],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return path
