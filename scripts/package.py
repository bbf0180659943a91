#!/usr/bin/env python3
"""The Lambda package's size, as `sam build` leaves it, against its budget.

Zips the `bootstrap` the way `sam deploy` does (deflate) and prints the size of both.
Fails (exit 1) when the bootstrap is over --max-bootstrap-mib or the zip is over
--max-zip-mib, when it still carries a symbol table or debug sections (the release
profile strips it), or when it was built for another machine than --arch.

    scripts/package.py .aws-sam/build/FlagFunction/bootstrap --arch aarch64
"""

import argparse
import os
import struct
import sys
import zipfile

MIB = 1024 * 1024

# ELF e_machine values of the two Lambda architectures.
MACHINES = {183: "aarch64", 62: "x86_64"}


def elf_facts(path):
    """(machine name, section names) of a 64-bit little-endian ELF file, or None."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    headers = [data[shoff + i * shentsize: shoff + (i + 1) * shentsize] for i in range(shnum)]
    names = []
    if shnum and shstrndx < shnum:
        str_off, str_size = struct.unpack_from("<QQ", headers[shstrndx], 24)
        strings = data[str_off: str_off + str_size]
        for header in headers:
            at = struct.unpack_from("<I", header, 0)[0]
            names.append(strings[at: strings.index(b"\0", at)].decode("ascii", "replace"))
    return MACHINES.get(machine, f"machine {machine}"), names


def zipped_size(path, out):
    """Size of `path` deflated into `out` as `bootstrap`, executable, as sam deploy zips it."""
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(path, "rb") as f, zipfile.ZipFile(out, "w") as z:
        z.writestr(info, f.read())
    return os.path.getsize(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("--zip", help="where to write the zip (default: beside the bootstrap)")
    parser.add_argument("--arch", help="the machine it must be built for (aarch64, x86_64)")
    parser.add_argument("--max-bootstrap-mib", type=float, default=12)
    parser.add_argument("--max-zip-mib", type=float, default=4)
    args = parser.parse_args()

    out = args.zip or os.path.join(os.path.dirname(os.path.abspath(args.bootstrap)), "bootstrap.zip")
    raw = os.path.getsize(args.bootstrap)
    zipped = zipped_size(args.bootstrap, out)
    print(f"bootstrap {raw:,} bytes ({raw / MIB:.2f} MiB), zipped {zipped:,} bytes ({zipped / MIB:.2f} MiB): {out}")

    problems = []
    if raw > args.max_bootstrap_mib * MIB:
        problems.append(f"the bootstrap is over {args.max_bootstrap_mib:g} MiB")
    if zipped > args.max_zip_mib * MIB:
        problems.append(f"the zip is over {args.max_zip_mib:g} MiB")
    facts = elf_facts(args.bootstrap)
    if facts is None:
        problems.append("not a 64-bit little-endian ELF executable")
    else:
        machine, sections = facts
        if args.arch and machine != args.arch:
            problems.append(f"built for {machine}, not {args.arch}")
        # .debug_gdb_scripts only names rustc's gdb pretty-printers (a few bytes); strip keeps it.
        kept = [s for s in sections if s == ".symtab" or (s.startswith(".debug_") and s != ".debug_gdb_scripts")]
        if kept:
            problems.append(f"not stripped: {', '.join(kept)}")
    for problem in problems:
        print(f"package: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
