"""On-disk inverted lists grown in place, a round at a time, the committed generation intact.

FAISS's ``OnDiskInvertedLists`` keeps every list in a slot of one file (codes, then ids,
``capacity`` entries) and the table of slots in the index file. A round here writes only
where the committed generation does not read: past a list's size within its slot, or, for a
list that outgrows its slot or loses entries, into a new slot (FAISS's own allocator: the
file's free slots or its growth, capacity doubled as FAISS does). The slots left behind are
freed only in the table of the new generation. So a round costs the I/O of what it adds plus
the lists it moves, not a copy of the file, and a crash before the commit leaves the
committed generation whole. Each generation names the file ``index-<gen>.ivfdata``: a hard
link to the same file, so the usual tidying of other generations' files never loses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from retrieval.atomic import fsync_dir

from indexes.store.faiss_ops import _quiet_c_stdout as quiet_c_stdout  # noqa: PLC2701 (one helper, shared)

ID_BYTES = 8  # FAISS ids are int64
INVALID_OFFSET = (1 << 64) - 1  # an empty list's offset in OnDiskInvertedLists


def lists_of(index: faiss.Index) -> faiss.OnDiskInvertedLists:
    return faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)


def new_lists(index: faiss.Index, path: Path) -> None:
    """Give the trained IVF ``index`` empty inverted lists in a new file at ``path``."""
    path.unlink(missing_ok=True)  # a name left by a killed build may link the committed file
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(path))
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns them now
    index.ntotal = ivf.ntotal = 0


def open_writable(index_path: Path, lists_path: Path) -> faiss.Index:
    """The committed index at ``index_path``, its lists file mapped for writing under the
    next generation's name ``lists_path``."""
    with quiet_c_stdout():  # FAISS notes where it found the lists
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    follow(index, lists_path)
    return index


def follow(index: faiss.Index, lists_path: Path) -> None:
    """Name the lists file of ``index`` ``lists_path`` too (a hard link), for the generation
    that is written next; the index records that name."""
    lists = lists_of(index)
    lists_path.unlink(missing_ok=True)
    os.link(lists.filename, lists_path)
    fsync_dir(lists_path.parent)
    lists.filename = str(lists_path)


class Growth:
    """One round's changes to the on-disk lists of IVF ``index``; ``finish`` applies them.

    The file is read and written with pread/pwrite, not through FAISS's mapping: the pages a
    build writes stay in the page cache, not in its resident memory."""

    def __init__(self, index: faiss.Index) -> None:
        self.index, self.ivf, self.od = index, faiss.extract_index_ivf(index), lists_of(index)
        self.code_size = self.od.code_size
        entries = [self.od.lists.at(i) for i in range(self.od.nlist)]
        self.size = np.array([e.size for e in entries], np.int64)
        self.capacity = np.array([e.capacity for e in entries], np.int64)
        self.offset = np.array([e.offset for e in entries], np.uint64)
        self.freed: list[tuple[int, int]] = []  # (offset, bytes) of slots left this round
        self.delta = 0  # vectors added minus removed
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:  # after the first slot: a new file exists only from then on
            self._fd = os.open(self.od.filename, os.O_RDWR)
        return self._fd

    def _entries(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes (size, code_size) uint8, ids (size,) int64) of list ``i``, read."""
        off, cap, n = int(self.offset[i]), int(self.capacity[i]), int(self.size[i])
        cs = self.code_size
        codes = np.frombuffer(os.pread(self._file(), n * cs, off), np.uint8).reshape(n, cs)
        ids = np.frombuffer(os.pread(self._file(), n * ID_BYTES, off + cap * cs), np.int64)
        return codes, ids

    def _write(self, i: int, at: int, codes: np.ndarray, ids: np.ndarray) -> None:
        """Entries ``at``... of list ``i`` become ``codes`` and ``ids``."""
        off, cap, cs = int(self.offset[i]), int(self.capacity[i]), self.code_size
        _pwrite(self._file(), np.ascontiguousarray(codes, np.uint8), off + at * cs)
        _pwrite(self._file(), np.ascontiguousarray(ids, np.int64), off + cap * cs + at * ID_BYTES)

    def _move(self, i: int, codes: np.ndarray, ids: np.ndarray) -> None:
        """List ``i`` becomes ``codes`` and ``ids``, in a new slot; its old slot is freed at
        ``finish``."""
        if self.capacity[i]:
            slot = int(self.capacity[i]) * (self.code_size + ID_BYTES)
            self.freed.append((int(self.offset[i]), slot))
        n = len(ids)
        if n == 0:
            self.size[i], self.capacity[i], self.offset[i] = 0, 0, INVALID_OFFSET
            return
        capacity = 1 << (n - 1).bit_length()  # as OnDiskInvertedLists::resize_locked
        with quiet_c_stdout():  # "resizing ..." when the file grows
            offset = self.od.allocate_slot(capacity * (self.code_size + ID_BYTES))
        self.size[i], self.capacity[i], self.offset[i] = n, capacity, offset
        self._write(i, 0, codes, ids)

    def append(self, part: faiss.Index) -> None:
        """Add the vectors of ``part``, an in-memory IVF index like ``index`` (same
        quantizer and codes), to the lists."""
        src = faiss.extract_index_ivf(part).invlists
        cs = self.code_size
        for i in range(self.od.nlist):
            n = src.list_size(i)
            if not n:
                continue
            codes = faiss.rev_swig_ptr(src.get_codes(i), n * cs).reshape(n, cs)
            ids = faiss.rev_swig_ptr(src.get_ids(i), n)
            if self.size[i] + n <= self.capacity[i]:  # past what the committed generation reads
                self._write(i, int(self.size[i]), codes, ids)
                self.size[i] += n
            else:
                old_codes, old_ids = self._entries(i) if self.size[i] else (codes[:0], ids[:0])
                self._move(i, np.concatenate([old_codes, codes]), np.concatenate([old_ids, ids]))
        self.delta += part.ntotal

    def remove(self, ids: np.ndarray) -> None:
        """Take ``ids`` out of the lists (each list that holds one is moved, compacted)."""
        ids = np.unique(np.asarray(ids, np.int64))
        if not len(ids):
            return
        for i in np.flatnonzero(self.size):
            codes, listed = self._entries(int(i))
            hit = np.isin(listed, ids)
            if hit.any():
                self._move(int(i), codes[~hit], listed[~hit])
                self.delta -= int(hit.sum())

    def finish(self) -> None:
        """Write the new table of lists into the index (its file is written next), free the
        slots left behind, and make the lists file durable."""
        table = faiss.OnDiskOneListVector()
        for n, cap, off in zip(self.size.tolist(), self.capacity.tolist(), self.offset.tolist()):
            entry = faiss.OnDiskOneList()
            entry.size, entry.capacity, entry.offset = n, cap, off
            table.push_back(entry)
        self.od.lists = table
        for offset, nbytes in self.freed:
            self.od.free_slot(offset, nbytes)
        self.freed = []
        self.ivf.ntotal += self.delta
        self.index.ntotal = self.ivf.ntotal
        self.delta = 0
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


def _pwrite(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
