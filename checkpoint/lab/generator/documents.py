"""Documents folder of the generated prod, laid out as Dolibarr 20.0.2 lays out ``documents/``.

PNG and PDF files are built with the standard library only. Modification times are
fixed by the seed and the invoice dates, so two runs give identical trees.
"""

from __future__ import annotations

import datetime
import os
import struct
import zlib
from pathlib import Path

from checkpoint.exceptions import LabError
from checkpoint.lab.generator import reference
from checkpoint.lab.generator.rows import STATUS_DRAFT, invoice_date, invoice_ref, invoice_status

INSTALL_LOCK_TEXT = "This is a lock file to prevent use of install or upgrade pages (set with permission 444)"
HTACCESS_TEXT = "Order allow,deny\nDeny from all\n"

# Module folders that Dolibarr creates when a module is switched on, most with a ``temp`` folder.
MODULE_FOLDERS = (
    "societe/temp", "banque/temp", "facture/temp", "users/temp", "api/temp", "admin/temp", "agenda/temp",
    "mailing/temp", "paypal/temp", "webhook/temp", "export/temp", "import/temp", "medias/image",
    "doctemplates/invoices", "produit", "propale", "ficheinter",
)

# (file name, width, height) of the company logo and the two thumbnails Dolibarr derives.
LOGO_SIZES = (
    (reference.LOGO_NAME, 240, 80),
    (f"thumbs/{reference.LOGO_SMALL_NAME}", 150, 50),
    (f"thumbs/{reference.LOGO_MINI_NAME}", 48, 16),
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def generate_documents(root: Path, *, invoice_count: int, seed: int = 0) -> None:
    """Write the documents tree of a prod with ``invoice_count`` invoices into ``root``.

    ``root`` must be missing or empty. Each validated invoice gets ``facture/<ref>/<ref>.pdf``
    with the ref that ``generate_database`` gives it for the same invoice count.
    """
    if invoice_count < 0:
        raise LabError(f"invalid invoice count {invoice_count} for the documents tree: use 0 or more")
    if root.exists() and any(root.iterdir()):
        raise LabError(f"documents folder {root} is not empty: pass a missing or empty folder")

    root.mkdir(parents=True, exist_ok=True)
    install_time = _timestamp(datetime.datetime.fromisoformat(reference.INSTALL_TIME))

    _write(root / "install.lock", INSTALL_LOCK_TEXT.encode(), install_time, mode=0o444)
    _write(root / ".htaccess", HTACCESS_TEXT.encode(), install_time)
    for folder in MODULE_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    _write_logos(root / "mycompany" / "logos", seed, install_time)
    _write_invoice_pdfs(root / "facture", invoice_count, seed)

    _set_folder_times(root, install_time)


def _write_logos(folder: Path, seed: int, mtime: float) -> None:
    for name, width, height in LOGO_SIZES:
        _write(folder / name, png_image(width, height, seed), mtime)


def _write_invoice_pdfs(folder: Path, invoice_count: int, seed: int) -> None:
    for number in range(1, invoice_count + 1):
        if invoice_status(number, invoice_count) == STATUS_DRAFT:
            continue
        ref = invoice_ref(number, invoice_count)
        issued = datetime.datetime.combine(invoice_date(number, invoice_count), datetime.time(9))
        # Spread generation times over the working day, fixed by seed and invoice number.
        offset_seconds = (number * 7919 + seed * 104729) % 32400
        mtime = _timestamp(issued) + offset_seconds
        _write(folder / ref / f"{ref}.pdf", invoice_pdf(ref), mtime)


def _write(path: Path, data: bytes, mtime: float, *, mode: int = 0o660) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (mtime, mtime))


def _set_folder_times(root: Path, mtime: float) -> None:
    """Give every folder the install time, deepest first, since creating entries changes a parent's time."""
    folders = sorted((path for path in root.rglob("*") if path.is_dir()), key=lambda path: len(path.parts))
    for folder in reversed(folders):
        os.utime(folder, (mtime, mtime))
    os.utime(root, (mtime, mtime))


def _timestamp(moment: datetime.datetime) -> float:
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


# -- file formats ---------------------------------------------------------------


def png_image(width: int, height: int, seed: int) -> bytes:
    """Return an RGB PNG: a colored band on white, the color fixed by ``seed``."""
    color = bytes(((seed * 67 + 40) % 200, (seed * 31 + 90) % 200, (seed * 13 + 160) % 256))
    white = b"\xff\xff\xff"
    band_top, band_bottom = height // 4, height - height // 4
    rows = []
    for y in range(height):
        pixel = color if band_top <= y < band_bottom else white
        rows.append(b"\x00" + pixel * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    checksum = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)


def invoice_pdf(ref: str) -> bytes:
    """Return a one-page PDF 1.4 that shows the invoice ref, with a correct cross-reference table."""
    text = f"BT /F1 18 Tf 72 760 Td (Invoice {ref}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    output = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_offset = len(output)
    output += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        output += f"{offset:010d} 00000 n \n".encode()
    output += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n".encode()
    return bytes(output)
