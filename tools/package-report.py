"""After `sam build`: each function's bootstrap, its size and its zipped size (deflate
level 9, as the deployment package Lambda receives). Exits 1 if one is missing or is
not an arm64 executable.

    python tools/package-report.py BUILD_DIR FUNCTION...
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

# ELF header: e_machine (offset 18, little-endian) 0xB7 is AArch64.
EM_AARCH64 = 0xB7


def main(build_dir: str, functions: list[str]) -> int:
    failed = False
    for function in functions:
        path = Path(build_dir) / function / "bootstrap"
        if not path.is_file():
            print(f"{function:<24} MISSING {path}")
            failed = True
            continue
        data = path.read_bytes()
        arm64 = data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == EM_AARCH64
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.writestr("bootstrap", data)
        print(f"{function:<24} {len(data):>9} bytes ({len(data) / 2**20:.2f} MiB), "
              f"zipped {len(buffer.getvalue()) / 2**20:.2f} MiB{'' if arm64 else '  NOT AN ARM64 ELF'}")
        failed |= not arm64
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
