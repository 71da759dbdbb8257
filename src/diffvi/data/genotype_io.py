"""Read and write genotype files (PLINK 1 binary, VCF, tskit tree sequences) and label files.

Every reader returns a :class:`~diffvi.data.genotypes.Genotypes`: int8 calls ``[N, M]`` with
0/1/2 copies of the counted allele and ``MISSING`` (-1) for a missing call.

Engines (the ``genomics`` extra: ``pip install 'diffvi[genomics]'``), imported lazily:

- **PLINK** through `bed-reader <https://fastlmm.github.io/bed-reader>`_: a Rust reader that
  decodes the 2-bit codes straight into an int8 array, multithreaded, so a 1000 Genomes-sized
  ``.bed`` never passes through a float matrix (8× the memory of int8) or a Python loop.
- **VCF/BCF** through `cyvcf2 <https://brentp.github.io/cyvcf2>`_: built on htslib, it streams
  records one at a time and reads plain, gzip and bgzip files alike; the calls of each record go
  into int8 blocks of records, so memory stays within twice the int8 matrix.
- **Tree sequences** through `tskit <https://tskit.dev>`_: the file msprime and stdpopsim write.

Which allele is counted:

- PLINK: the **second allele** of the ``.bim`` (column 6, "A2"), i.e. bed-reader's
  ``count_A1=False``: the 2-bit code ``00`` (homozygous first allele) reads 0, ``10`` (het) 1,
  ``11`` (homozygous second allele) 2 and ``01`` missing. Files written by :func:`write_plink`
  put REF as A1 and ALT as A2, so a round trip counts ALT as the VCF reader does. Beware that
  PLINK 1.9 usually makes A1 the minor allele, so for its files the calls count the major allele;
  allele frequency filters and PCA do not care (a flip changes only the sign of a component).
- VCF: the ALT allele (GT allele index 1); records with more than one ALT are skipped.
- Tree sequences: the derived allele of biallelic sites.

Labels: :func:`read_labels` reads a sample → (population, super-population) table such as the
1000 Genomes ``.panel`` file; :func:`attach_labels` puts them in row order and refuses labels
whose samples are not in the genotypes (a sign of the wrong label file or a renamed sample)
unless asked to ignore them (a full panel against a subset of its samples).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from diffvi.data.genotypes import MISSING, Genotypes

__all__ = [
    "PlinkBlocks",
    "attach_labels",
    "extra_labels",
    "is_plink",
    "read_genotypes",
    "read_labels",
    "read_plink",
    "read_tree_sequence",
    "read_vcf",
    "write_labels",
    "write_plink",
    "write_vcf",
]

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'diffvi[genomics]'"
_BED_MAGIC = b"\x6c\x1b"
_BED_SNP_MAJOR = 0x01
_PLINK_SUFFIXES = (".bed", ".bim", ".fam")
_VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
_TREE_SUFFIXES = (".trees", ".ts", ".tsz")
# "chr1:12345", "1:12345", "1:12345:A:C" all encode a chromosome and a position.
_POSITION_ID = re.compile(r"^(?:chr)?([A-Za-z0-9]+):(\d+)(?::.*)?$")


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f"reading genotype files needs the {module!r} package: {_INSTALL_HINT}"
        ) from error


# --------------------------------------------------------------------------------------------
# PLINK 1 binary (.bed/.bim/.fam)


def _plink_prefix(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in _PLINK_SUFFIXES else path


def _count_lines(path: Path) -> int:
    """The number of non-blank lines of a text file, read in binary without decoding."""
    with open(path, "rb") as file:
        return sum(1 for line in file if line.strip())


def _check_bed(prefix: Path) -> tuple[int, int]:
    """Validate a PLINK file set before reading it; returns ``(N, M)``."""
    files = {suffix: Path(f"{prefix}{suffix}") for suffix in _PLINK_SUFFIXES}
    for suffix, file in files.items():
        if not file.is_file():
            raise FileNotFoundError(f"PLINK {suffix} file not found: {file}")
    bed = files[".bed"]
    with open(bed, "rb") as file:
        header = file.read(3)
    if len(header) < 3 or header[:2] != _BED_MAGIC:
        raise ValueError(
            f"{bed} is not a PLINK 1 .bed file: expected the magic bytes 6c 1b, "
            f"got {header[:2].hex(' ') or 'an empty file'}"
        )
    if header[2] != _BED_SNP_MAJOR:
        raise ValueError(
            f"{bed} is in individual-major mode (third byte {header[2]:#04x}); only SNP-major "
            "(0x01) files are supported: rewrite it with `plink --bfile ... --make-bed`"
        )
    n = _count_lines(files[".fam"])
    m = _count_lines(files[".bim"])
    expected = 3 + m * math.ceil(n / 4)
    actual = bed.stat().st_size
    if actual != expected:
        if actual < expected:
            why = (
                "the .bed looks truncated (an interrupted download or copy?), "
                "or the .fam/.bim counts disagree with it"
            )
        else:
            why = "the .fam/.bim counts disagree with the .bed (or it has trailing bytes)"
        raise ValueError(
            f"{bed} has {actual} bytes but {n} samples (.fam lines) and {m} variants "
            f"(.bim lines) need 3 + {m} * ceil({n} / 4) = {expected} bytes: {why}"
        )
    return n, m


def read_plink(path: str | Path, num_threads: int | None = None) -> Genotypes:
    """Read a PLINK 1 binary file set (``.bed`` + ``.bim`` + ``.fam``).

    Args:
        path: the ``.bed`` (or ``.bim``/``.fam``) file, or the prefix shared by the three.
        num_threads: threads for bed-reader (``None``: all cores).

    Returns:
        Genotypes with int8 calls ``[N, M]`` counting the ``.bim`` second allele (A2, see the
        module docstring), ``MISSING`` for missing calls; samples are the ``.fam`` IIDs
        (``FID:IID`` when IIDs repeat); variants the ``.bim`` ids (``CHR:POS`` when ``.``).

    Raises:
        FileNotFoundError: one of the three files is missing.
        ValueError: not a SNP-major ``.bed``, or its size disagrees with the ``.fam``/``.bim``.
    """
    prefix = _plink_prefix(path)
    n, m = _check_bed(prefix)
    bed_reader = _import("bed_reader")
    with bed_reader.open_bed(
        f"{prefix}.bed", iid_count=n, sid_count=m, count_A1=False, num_threads=num_threads
    ) as bed:
        calls = bed.read(dtype="int8", order="C", num_threads=num_threads)
        samples, variants = _plink_ids(bed, prefix)
    _replace(calls, -127, MISSING)  # bed-reader's int8 missing value
    return Genotypes(calls, samples, variants)


def _plink_ids(bed: object, prefix: Path) -> tuple[list[str], list[str]]:
    """Sample and variant identifiers of an open bed-reader file, as :func:`read_plink` names
    them."""
    fid = [str(x) for x in bed.fid]  # type: ignore[attr-defined]
    iid = [str(x) for x in bed.iid]  # type: ignore[attr-defined]
    sid = [str(x) for x in bed.sid]  # type: ignore[attr-defined]
    chromosome = [str(x) for x in bed.chromosome]  # type: ignore[attr-defined]
    position = [int(x) for x in bed.bp_position]  # type: ignore[attr-defined]
    samples = iid
    if len(set(iid)) != len(iid):
        samples = [f"{f}:{i}" for f, i in zip(fid, iid, strict=True)]
        if len(set(samples)) != len(samples):
            raise ValueError(f"{prefix}.fam has repeated (FID, IID) pairs")
    variants = [
        s if s not in ("", ".") else f"{c}:{p}"
        for s, c, p in zip(sid, chromosome, position, strict=True)
    ]
    return samples, variants


class PlinkBlocks:
    """Windows of variant columns of a PLINK ``.bed``, read on demand: the block reader of the
    streaming PCA (:mod:`diffvi.data.genotype_rpca`), which never holds the ``[N, M]`` calls.

    The ``.bed`` is SNP-major, so a window of consecutive variants is one contiguous run of
    bytes; bed-reader decodes it into int8. The object pickles without its open file (a Dask
    worker reopens it), so it can be shipped to other processes and machines that see the same
    path.

    Attributes:
        path: the ``.bed``.
        samples: identifiers of the rows read (all ``.fam`` samples, or the ``rows`` subset),
            as :func:`read_plink` names them.
        variants: the ``M`` variant identifiers.
        rows: ``.fam`` row indices read, or ``None`` for all.
        reads_into: ``True``: :meth:`read` decodes into a caller's buffer (``out=``).
    """

    reads_into = True

    def __init__(
        self,
        path: str | Path,
        rows: np.ndarray | None = None,
        num_threads: int | None = None,
    ) -> None:
        prefix = _plink_prefix(path)
        n, m = _check_bed(prefix)
        self.path = Path(f"{prefix}.bed")
        self.num_threads = num_threads
        self._shape = (n, m)
        self._bed: object | None = None
        samples, self.variants = _plink_ids(self._open(), prefix)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.intp)
        if (
            self.rows is not None
            and len(self.rows)
            and not (0 <= self.rows.min() <= self.rows.max() < n)
        ):
            raise ValueError(f"rows must index the {n} samples of {self.path}")
        self.samples = samples if self.rows is None else [samples[i] for i in self.rows]

    def _open(self) -> object:
        if self._bed is None:
            bed_reader = _import("bed_reader")
            n, m = self._shape
            self._bed = bed_reader.open_bed(
                self.path, iid_count=n, sid_count=m, count_A1=False, num_threads=self.num_threads
            )
        return self._bed

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_bed"] = None  # an open file does not travel; reopened on first read
        state.pop("_all_rows", None)
        return state

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def num_variants(self) -> int:
        return self._shape[1]

    def subset(self, rows: np.ndarray) -> PlinkBlocks:
        """The same file restricted to ``rows`` (indices into :attr:`samples`)."""
        rows = np.asarray(rows, dtype=np.intp)
        base = rows if self.rows is None else self.rows[rows]
        return PlinkBlocks(self.path, base, self.num_threads)

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """int8 ``[N, stop - start]`` calls of variants ``start:stop`` (``MISSING`` -1).

        ``out``: a Fortran-ordered int8 ``[N, >= stop - start]`` buffer to decode into; the
        result is then its first ``stop - start`` columns (no new array, so a pass over many
        windows reuses one buffer instead of mapping fresh pages for each).
        """
        bed = self._open()
        if out is None:
            rows = slice(None) if self.rows is None else self.rows
            calls = bed.read(  # type: ignore[attr-defined]
                index=np.s_[rows, start:stop], dtype="int8", order="F", num_threads=self.num_threads
            )
        else:
            calls = out[:, : stop - start]
            self._read_into(bed, start, stop, calls)
        np.maximum(calls, MISSING, out=calls)  # bed-reader's int8 missing value -127 -> -1
        return calls

    def _read_into(self, bed: object, start: int, stop: int, out: np.ndarray) -> None:
        """Decode variants ``start:stop`` into ``out`` through bed-reader's file reader (its
        ``read`` has no ``out=``: it always allocates); the public ``read`` and a copy where
        that reader is not available (another bed-reader version, a cloud file)."""
        n, m = self._shape
        pick = getattr(bed, "_pick_reader", None)
        reader = pick(np.int8) if pick is not None else None
        try:
            from bed_reader._open_bed import get_num_threads
        except ImportError:  # another layout of bed-reader's internals
            reader = None
        if reader is None or reader[2] or not out.flags.f_contiguous:
            rows = slice(None) if self.rows is None else self.rows
            out[...] = bed.read(  # type: ignore[attr-defined]
                index=np.s_[rows, start:stop], dtype="int8", order="F", num_threads=self.num_threads
            )
            return
        if self.rows is None:
            rows = getattr(self, "_all_rows", None)
            if rows is None:
                rows = self._all_rows = np.arange(n, dtype=np.intp)
        else:
            rows = self.rows
        read, location, _ = reader
        read(
            location,
            bed.cloud_options,  # type: ignore[attr-defined]
            iid_count=n,
            sid_count=m,
            is_a1_counted=False,
            iid_index=rows,
            sid_index=np.arange(start, stop, dtype=np.intp),
            val=out,
            num_threads=get_num_threads(self.num_threads),
        )

    def close(self) -> None:
        if self._bed is not None:
            self._bed.close()  # type: ignore[attr-defined]
            self._bed = None


def _replace(calls: np.ndarray, old: int, new: int, rows: int = 4096) -> None:
    """Replace ``old`` by ``new`` in place, a block of rows at a time (a small boolean mask)."""
    for start in range(0, calls.shape[0], rows):
        block = calls[start : start + rows]
        block[block == old] = new


def _positions(variants: list[str]) -> tuple[list[str], list[int]]:
    """Chromosomes and positions: from the ids if every id encodes them, else 1 and 1..M."""
    matches = [_POSITION_ID.match(v) for v in variants]
    if variants and all(matches):
        return [x.group(1) for x in matches], [int(x.group(2)) for x in matches]  # type: ignore[union-attr]
    return ["1"] * len(variants), list(range(1, len(variants) + 1))


def write_plink(genotypes: Genotypes, path_prefix: str | Path) -> Path:
    """Write ``genotypes`` as ``<prefix>.bed/.bim/.fam``; returns the ``.bed`` path.

    The ``.fam`` has FID = the population when known (else the sample) and IID = the sample;
    the ``.bim`` has the variant ids, chromosome and position parsed from ids like
    ``chr1:12345`` when every id has that form (else chromosome 1, positions 1..M), A1 = ``A``
    (REF) and A2 = ``C`` (ALT, the counted allele). Parent folders are created.
    """
    bed_reader = _import("bed_reader")
    prefix = _plink_prefix(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    named = (
        ("samples", genotypes.samples),
        ("variants", genotypes.variants),
        ("populations", genotypes.populations or []),
    )
    for name, values in named:
        bad = [v for v in values if not v or any(ch.isspace() for ch in v)]
        if bad:
            raise ValueError(f"PLINK {name} cannot be empty or hold whitespace, got {bad[:5]}")
    calls = genotypes.calls.copy()
    _replace(calls, MISSING, -127)
    chromosome, position = _positions(genotypes.variants)
    m = genotypes.num_variants
    properties = {
        "fid": list(genotypes.populations or genotypes.samples),
        "iid": list(genotypes.samples),
        "sid": list(genotypes.variants),
        "chromosome": chromosome,
        "bp_position": position,
        "allele_1": ["A"] * m,
        "allele_2": ["C"] * m,
    }
    bed = Path(f"{prefix}.bed")
    bed_reader.to_bed(bed, calls, properties=properties, count_A1=False)
    return bed


# --------------------------------------------------------------------------------------------
# VCF


def read_vcf(path: str | Path, threads: int | None = None, block_size: int = 4096) -> Genotypes:
    """Read the diploid GT calls of a VCF/BCF (``.vcf``, ``.vcf.gz`` gzip or bgzip, ``.bcf``).

    Calls are the number of ALT alleles; a missing or half-missing call (``./.``, ``./1``) is
    ``MISSING``. Records with more than one ALT allele are skipped, and their number is logged
    as a warning. A record without ALT (``.``) reads as all 0. Records go into int8 blocks of
    ``block_size`` rows, transposed into the matrix at the end: at most twice its memory.

    Args:
        path: the VCF/BCF file.
        threads: htslib decompression threads (``None``: htslib's default).
        block_size: records per int8 block.

    Returns:
        Genotypes ``[N, M]``; variant ids from the ID column, ``CHROM:POS`` where it is ``.``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a VCF/BCF (random bytes, other text, damaged gzip data) or
            is damaged (cut short, a malformed record); a record holds haploid or polyploid
            calls; the file has no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VCF file not found: {path}")
    _check_vcf_start(path)
    cyvcf2 = _import("cyvcf2")
    try:
        vcf = cyvcf2.VCF(str(path), lazy=True, threads=threads)
    except Exception as err:  # htslib cannot read the header: OSError or a bare Exception
        if type(err) is not Exception and not isinstance(err, OSError):
            raise
        raise ValueError(
            f"{path} is a damaged VCF file: htslib cannot read its header (a truncated file or "
            f"a malformed header line; {err})"
        ) from None
    try:
        samples = list(vcf.samples)
        n = len(samples)
        if n == 0:
            raise ValueError(f"{path} has no samples (no genotype columns)")
        blocks: list[np.ndarray] = []  # variant-major [block_size, N]: one record per row
        variants: list[str] = []
        skipped = 0
        for record in _vcf_records(vcf, path):
            if len(record.ALT) > 1:
                skipped += 1
                continue
            genotype = _record_genotype(record, path)
            if genotype is None:
                raise ValueError(f"{path}: record {record.CHROM}:{record.POS} has no GT field")
            alleles = genotype.array()[:, :-1]  # [N, ploidy]; last column: the phased flag
            if alleles.shape[1] != 2 or (alleles == -2).any():
                raise ValueError(
                    f"{path}: record {record.CHROM}:{record.POS} has non-diploid calls "
                    f"(ploidy {alleles.shape[1]} or haploid calls); read_vcf reads diploid GT"
                )
            j = len(variants) % block_size
            if j == 0:
                blocks.append(np.empty((block_size, n), dtype=np.int8))
            row = blocks[-1][j]
            np.sum(alleles > 0, axis=1, out=row, dtype=np.int8)
            row[(alleles < 0).any(axis=1)] = MISSING
            variants.append(record.ID or f"{record.CHROM}:{record.POS}")
    finally:
        vcf.close()
    if skipped:
        log.warning("%s: skipped %d multi-allelic records (more than one ALT)", path, skipped)
    calls = np.empty((n, len(variants)), dtype=np.int8)
    for b in range(len(blocks)):
        start = b * block_size
        stop = min(start + block_size, len(variants))
        calls[:, start:stop] = blocks[b][: stop - start].T
        blocks[b] = calls[:0, :0]  # release the block as soon as it is copied
    return Genotypes(calls, samples, variants)


def _check_vcf_start(path: Path) -> None:
    """A ValueError naming ``path`` unless it starts as a VCF (``##fileformat=VCF``) or a BCF
    (``BCF\\2``) does, plain or gzip/bgzip-compressed: htslib's own errors on other files are
    a bare "Error opening" or a crash of the record parser."""
    with open(path, "rb") as f:
        head = f.read(4096)
    compressed = head.startswith(b"\x1f\x8b")
    if compressed:  # what its first bytes decompress to (a file cut short is htslib's)
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 64)
        except zlib.error as err:
            raise ValueError(
                f"{path} is not a VCF file: its gzip data is damaged ({err})"
            ) from None
    starts = (b"##fileformat=VCF", b"BCF\x02")
    if head and any(head.startswith(s) or s.startswith(head) for s in starts):
        return  # a VCF or BCF, or one cut short in its first line (htslib says so)
    if not head:
        found = "it is empty" + (" (once decompressed)" if compressed else "")
    elif b"\0" in head or not _is_text(head):
        found = (
            "it holds binary data, neither gzip nor BCF"
            if not compressed
            else ("its decompressed content is binary data")
        )
    else:
        first = head.splitlines()[0][:40].decode("utf-8", "replace")
        found = f"its first line is {first!r}" + (" (decompressed)" if compressed else "")
    raise ValueError(
        f"{path} is not a VCF file: a VCF starts with '##fileformat=VCF' (a BCF with 'BCF'); "
        f"{found}"
    )


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(data) - 3  # a character cut at the end of the block
    return True


def _vcf_records(vcf, path: Path) -> Iterator:
    """The records of an open ``cyvcf2.VCF``; htslib's bare ``Exception`` on a record it
    cannot parse (a truncated file, a malformed line) as a ValueError naming ``path``."""
    records = iter(vcf)
    count = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as err:
            if type(err) is not Exception and not isinstance(err, OSError):
                raise
            raise ValueError(
                f"{path} is a damaged VCF file: htslib cannot parse record {count + 1} (a "
                f"truncated file or a malformed line; {err})"
            ) from None
        count += 1
        yield record


def _record_genotype(record, path: Path):
    """``record.genotype``; htslib's bare ``Exception`` on a malformed GT field as a
    ValueError naming the record."""
    try:
        return record.genotype
    except Exception as err:
        if type(err) is not Exception:
            raise
        raise ValueError(
            f"{path} is a damaged VCF file: record {record.CHROM}:{record.POS} has unreadable "
            f"genotypes ({err})"
        ) from None


# The 4 bytes of each unphased call and its separator, indexed by call + 1.
_GT_BYTES = np.frombuffer(b"./.\t0/0\t0/1\t1/1\t", dtype=np.uint8).reshape(4, 4)


def write_vcf(
    genotypes: Genotypes, path: str | Path, chunk_size: int = 1000, compresslevel: int = 6
) -> Path:
    """Write a minimal VCF 4.2 with unphased GT (gzip when ``path`` ends in ``.gz``).

    REF/ALT are the dummy alleles ``A``/``C`` (the calls count ``C``); ``0/0``, ``0/1``, ``1/1``
    and ``./.`` for 0, 1, 2 and ``MISSING``. CHROM/POS come from ids like ``chr1:12345`` when
    every id has that form, else chromosome 1 and positions 1..M; the ID column is the variant
    id. A ``.gz`` file is plain gzip (level ``compresslevel``), which htslib reads but cannot
    index (recompress with ``bgzip`` for that). Rows are built ``chunk_size`` variants at a
    time as bytes, without a Python string per call.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chromosome, position = _positions(genotypes.variants)
    lengths: dict[str, int] = {}
    for c, p in zip(chromosome, position, strict=True):
        lengths[c] = max(lengths.get(c, 0), p)
    header = ["##fileformat=VCFv4.2", "##source=diffvi"]
    header += [f"##contig=<ID={c},length={length}>" for c, length in lengths.items()]
    header += [
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(genotypes.samples),
    ]
    gz = path.name.endswith(".gz")
    opener = functools.partial(gzip.open, compresslevel=compresslevel) if gz else open
    with opener(path, "wb") as file:
        file.write(("\n".join(header) + "\n").encode())
        calls = genotypes.calls
        for start in range(0, genotypes.num_variants, chunk_size):
            block = calls[:, start : start + chunk_size].T.astype(np.intp) + 1  # [c, N]
            rows = _GT_BYTES[block].reshape(len(block), -1)  # [c, 4 N]: "0/1\t..."
            rows[:, -1] = ord("\n")
            for offset, row in enumerate(rows):
                j = start + offset
                fixed = f"{chromosome[j]}\t{position[j]}\t{genotypes.variants[j]}\tA\tC\t."
                file.write(f"{fixed}\tPASS\t.\tGT\t".encode())
                file.write(row.tobytes())
    return path


# --------------------------------------------------------------------------------------------
# tskit tree sequences


def _metadata_name(metadata: object) -> str | None:
    if isinstance(metadata, Mapping):
        name = metadata.get("name")
        return str(name) if name not in (None, "") else None
    return None


def read_tree_sequence(path: str | Path, block_size: int = 1024) -> Genotypes:
    """Read the diploid individuals of a tskit tree sequence (e.g. from msprime).

    Each individual's call is the sum of the derived-allele genotypes of its two sample nodes
    (``MISSING`` where either is missing). Sites with more or fewer than two alleles are
    skipped. Sites are decoded ``block_size`` at a time, so memory is the int8 matrix plus
    one block.

    Returns:
        Genotypes ``[N, M]`` with ``N`` individuals in id order; samples from the individual
        metadata ``name`` (else ``ind_<id>``), populations from the population metadata
        ``name`` (else ``pop_<id>``), variants ``1:<position>`` (``site_<id>`` when positions
        are not integers).

    Raises:
        ValueError: the tree sequence has no individuals, a sample node belongs to none, or an
            individual does not have exactly two sample nodes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tree sequence file not found: {path}")
    tskit = _import("tskit")
    try:
        ts = tskit.load(str(path))
    except tskit.FileFormatError as err:
        raise ValueError(f"{path} is not a tskit tree sequence file: {err}") from None
    sample_nodes = ts.samples()
    node_individual = ts.tables.nodes.individual[sample_nodes]
    if ts.num_individuals == 0 or (node_individual == tskit.NULL).all():
        raise ValueError(
            f"{path} has no individuals: simulate with msprime.sim_ancestry(samples=...) "
            "(ploidy 2), which records them, to read diploid genotypes"
        )
    if (node_individual == tskit.NULL).any():
        raise ValueError(
            f"{path}: {(node_individual == tskit.NULL).sum()} sample nodes belong to no individual"
        )
    individuals = np.unique(node_individual)
    counts = np.bincount(node_individual, minlength=ts.num_individuals)[individuals]
    if (counts != 2).any():
        bad = individuals[counts != 2][:5].tolist()
        raise ValueError(
            f"{path}: individuals must be diploid (2 sample nodes each); individuals {bad} have "
            f"{counts[counts != 2][:5].tolist()} sample nodes"
        )
    # Column of each individual's two nodes in variant.genotypes (which follows ts.samples()).
    order = np.argsort(node_individual, kind="stable")
    first, second = order[0::2], order[1::2]

    names = [_metadata_name(ts.individual(int(i)).metadata) for i in individuals]
    samples = (
        [str(x) for x in names]
        if all(names) and len(set(names)) == len(names)
        else [f"ind_{i}" for i in individuals]
    )
    population_names = {
        pop.id: _metadata_name(pop.metadata) or f"pop_{pop.id}" for pop in ts.populations()
    }
    node_population = ts.tables.nodes.population[sample_nodes[first]]
    populations = [population_names.get(int(p), f"pop_{p}") for p in node_population]

    positions = ts.tables.sites.position
    integral = bool(np.all(positions == np.round(positions)))
    n = len(individuals)
    calls = np.empty((n, ts.num_sites), dtype=np.int8)
    variants: list[str] = []
    block = np.empty((block_size, len(sample_nodes)), dtype=np.int8)
    filled = 0

    def flush() -> None:
        nonlocal filled
        if filled == 0:
            return
        haplotypes = block[:filled]
        diploid = haplotypes[:, first] + haplotypes[:, second]  # [filled, N]
        diploid[(haplotypes[:, first] < 0) | (haplotypes[:, second] < 0)] = MISSING
        j = len(variants) - filled
        calls[:, j : j + filled] = diploid.T
        filled = 0

    for variant in ts.variants():
        if sum(allele is not None for allele in variant.alleles) != 2:
            continue
        block[filled] = variant.genotypes
        filled += 1
        site = variant.site
        variants.append(f"1:{int(site.position)}" if integral else f"site_{site.id}")
        if filled == block_size:
            flush()
    flush()
    skipped = ts.num_sites - len(variants)
    if skipped:
        log.info("%s: skipped %d sites that are not biallelic", path, skipped)
    if len(variants) < ts.num_sites:
        calls = np.ascontiguousarray(calls[:, : len(variants)])
    return Genotypes(calls, samples, variants, populations=populations)


# --------------------------------------------------------------------------------------------
# dispatch


def is_plink(path: str | Path) -> bool:
    """Whether :func:`read_genotypes` reads ``path`` as PLINK: a ``.bed``/``.bim``/``.fam``, or
    a prefix with a ``.bed`` beside it."""
    path = Path(path)
    return path.suffix.lower() in _PLINK_SUFFIXES or Path(f"{path}.bed").is_file()


def read_genotypes(path: str | Path) -> Genotypes:
    """Read a genotype file, choosing the reader by suffix.

    ``.bed``/``.bim``/``.fam`` or a prefix with a ``.bed`` beside it → :func:`read_plink`;
    ``.vcf``, ``.vcf.gz``, ``.vcf.bgz``, ``.bcf`` → :func:`read_vcf`; ``.trees``, ``.ts``,
    ``.tsz`` → :func:`read_tree_sequence`.
    """
    path = Path(path)
    name = path.name.lower()
    if is_plink(path):
        return read_plink(path)
    if name.endswith(_VCF_SUFFIXES):
        return read_vcf(path)
    if name.endswith(_TREE_SUFFIXES):
        return read_tree_sequence(path)
    known = ", ".join(_PLINK_SUFFIXES + _VCF_SUFFIXES + _TREE_SUFFIXES)
    raise ValueError(
        f"cannot tell the format of {path}: expected one of {known}, "
        "or a PLINK prefix with a .bed beside it"
    )


# --------------------------------------------------------------------------------------------
# labels

_SAMPLE_COLUMNS = ("sample", "iid", "id", "sample_id")
_POPULATION_COLUMNS = ("population", "pop")
_SUPER_COLUMNS = ("super_population", "super_pop", "superpopulation", "super-population")


def _split_rows(text: str) -> Iterator[list[str]]:
    """Rows of a tab-, comma- or whitespace-separated table, chosen by its header line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return
    header = lines[0]
    if "\t" in header:
        for line in lines:
            yield [field.strip() for field in line.split("\t")]
    elif "," in header:
        yield from (
            [field.strip() for field in row] for row in csv.reader(io.StringIO("\n".join(lines)))
        )
    else:
        for line in lines:
            yield line.split()


def _find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.lower().lstrip("#") for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_labels(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """Read a sample → (population, super-population) table with a header row.

    Tab-, comma- or whitespace-separated (chosen by the header line). Column names, any case:
    sample = ``sample``/``IID``/``id``/``sample_id``; population = ``population``/``pop``;
    super-population (optional) = ``super_population``/``super_pop``/``superpopulation``/
    ``super-population``. Other columns are ignored, so the 1000 Genomes panel file
    (``sample pop super_pop gender``) reads as is. An empty super-population is ``None``.

    Raises:
        ValueError: no sample or population column, a short row, or a repeated sample.
    """
    path = Path(path)
    rows = _split_rows(path.read_text(encoding="utf-8"))
    header = next(rows, None)
    if header is None:
        raise ValueError(f"label file {path} is empty")
    sample_col = _find_column(header, _SAMPLE_COLUMNS)
    pop_col = _find_column(header, _POPULATION_COLUMNS)
    super_col = _find_column(header, _SUPER_COLUMNS)
    for what, col, names in (
        ("sample", sample_col, _SAMPLE_COLUMNS),
        ("population", pop_col, _POPULATION_COLUMNS),
    ):
        if col is None:
            raise ValueError(
                f"label file {path} has no {what} column: expected one of {list(names)} "
                f"in the header, got {header}"
            )
    assert sample_col is not None and pop_col is not None
    needed = max(sample_col, pop_col) + 1  # an empty trailing super-population may be cut
    labels: dict[str, tuple[str, str | None]] = {}
    for number, row in enumerate(rows, start=2):
        if len(row) < needed:
            raise ValueError(
                f"label file {path}, row {number}: expected at least {needed} fields, "
                f"got {len(row)}: {row}"
            )
        sample = row[sample_col]
        if sample in labels:
            raise ValueError(f"label file {path}: sample {sample!r} appears more than once")
        superpop = row[super_col] if super_col is not None and super_col < len(row) else ""
        labels[sample] = (row[pop_col], superpop or None)
    return labels


def write_labels(genotypes: Genotypes, path: str | Path) -> Path:
    """Write ``sample\\tpopulation\\tsuper_population`` rows (TSV with a header)."""
    if genotypes.populations is None:
        raise ValueError("these genotypes carry no populations to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    superpops = genotypes.super_populations or [""] * genotypes.num_samples
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        file.write("sample\tpopulation\tsuper_population\n")
        for row in zip(genotypes.samples, genotypes.populations, superpops, strict=True):
            file.write("\t".join(row) + "\n")
    return path


def extra_labels(genotypes: Genotypes, labels: Mapping[str, object]) -> list[str]:
    """The labelled samples that are not in the genotypes, in the order of ``labels``."""
    in_genotypes = set(genotypes.samples)
    return [s for s in labels if s not in in_genotypes]


def _name_some(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else f" ({len(names)})")


def attach_labels(
    genotypes: Genotypes,
    labels: Mapping[str, tuple[str, str | None]],
    drop_unlabelled: bool = False,
    *,
    ignore_extra_labels: bool = False,
) -> Genotypes:
    """Genotypes with ``populations``/``super_populations`` set from ``labels``, in row order.

    Policy: every labelled sample must be in the genotypes (a ValueError names up to five that
    are not, with their count; a wrong or stale label file shows up here), unless
    ``ignore_extra_labels=True`` drops those labels (a full panel against a subset of its
    samples; :func:`extra_labels` counts them). A genotype sample without a label is a
    ValueError too, unless ``drop_unlabelled=True`` drops its row. ``super_populations`` is set
    when every kept sample has one, ``None`` when none has.

    Args:
        genotypes: calls ``[N, M]``.
        labels: sample → (population, super-population or None), e.g. from :func:`read_labels`.
        drop_unlabelled: drop samples without a label instead of raising.
        ignore_extra_labels: drop labels of samples not in the genotypes instead of raising.

    Returns:
        Genotypes ``[N', M]`` (``N' = N`` unless rows were dropped).
    """
    extra = extra_labels(genotypes, labels)
    if extra and not ignore_extra_labels:
        raise ValueError(
            f"{len(extra)} labelled samples are not in the genotypes: {_name_some(extra)} "
            "(ignore them with ignore_extra_labels=True; on the command line, "
            "--ignore-extra-labels)"
        )
    unlabelled = [s for s in genotypes.samples if s not in labels]
    if unlabelled and not drop_unlabelled:
        raise ValueError(
            f"{len(unlabelled)} genotype samples have no label: {_name_some(unlabelled)} "
            "(drop them with drop_unlabelled=True; on the command line, --drop-unlabelled)"
        )
    if unlabelled:
        keep = np.array([s in labels for s in genotypes.samples])
        if not keep.any():
            raise ValueError("no genotype sample has a label")
        calls = np.ascontiguousarray(genotypes.calls[keep])
        samples = [s for s, k in zip(genotypes.samples, keep, strict=True) if k]
    else:
        calls, samples = genotypes.calls, list(genotypes.samples)
    populations = [labels[s][0] for s in samples]
    superpops = [labels[s][1] for s in samples]
    have = sum(x is not None for x in superpops)
    if 0 < have < len(samples):
        missing = [s for s, x in zip(samples, superpops, strict=True) if x is None]
        raise ValueError(
            f"{len(missing)} samples have a population but no super-population: "
            f"{_name_some(missing)}"
        )
    return Genotypes(
        calls,
        samples,
        list(genotypes.variants),
        populations=populations,
        super_populations=[str(x) for x in superpops] if have else None,
    )
