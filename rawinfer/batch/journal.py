"""The batch's progress journal beside OUTPUT: what is done survives a crash, so a run resumes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from rawinfer.batch.lines import PROGRESS_FORMAT, BatchError


# ------------------------------------------------------------------------------------ files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def scan_input(path: Path) -> tuple[int, str]:
    """(number of lines, sha256 of the file). A last line without a newline counts."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return lines, digest.hexdigest()


def iter_lines(path: Path):
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            yield n, raw.rstrip(b"\n").rstrip(b"\r")


class Journal:
    """OUTPUT.progress.jsonl: a header line, then one result line per finished input line,
    appended with flush + fsync. A torn last line (a crash mid-write) is cut off on open."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.status: dict[int, int] = {}  # line -> status
        self._lock = threading.Lock()
        if path.exists():
            self._load(header)
        else:
            self._create(header)
        self._f = open(path, "ab")

    def _create(self, header: dict) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def _load(self, header: dict) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        lines = data[:end].split(b"\n")[:-1]
        if not lines:
            self._create(header)
            return
        try:
            found = json.loads(lines[0])
        except ValueError:
            found = None
        if not isinstance(found, dict) or found.get("rawinfer_batch") != PROGRESS_FORMAT:
            raise BatchError(
                f"{self.path} is not a rawinfer batch progress file: move it away or delete it"
            )
        if (found.get("input_sha256"), found.get("lines")) != (
            header["input_sha256"],
            header["lines"],
        ):
            raise BatchError(
                f"{self.path} belongs to another input (the input file changed since it was "
                "started): delete it to start over, or restore that input"
            )
        for raw in lines[1:]:
            try:
                rec = json.loads(raw)
                n, status = int(rec["line"]), int(rec["status"])
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: that line is done again
            if 1 <= n <= header["lines"]:
                self.status.setdefault(n, status)

    def add(self, records: list[tuple[int, int, str]]) -> None:
        """Appends (line, status, record) results durably; a line already recorded is skipped."""
        with self._lock:
            new = [(n, s, r) for n, s, r in records if n not in self.status]
            if not new:
                return
            self._f.write(b"".join(r.encode("utf-8") + b"\n" for _, _, r in new))
            self._f.flush()
            os.fsync(self._f.fileno())
            for n, s, _ in new:
                self.status[n] = s

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.status), sum(1 for s in self.status.values() if s != 200)

    def close(self) -> None:
        self._f.close()

    def write_output(self, output: Path, total: int) -> None:
        """OUTPUT in input order (temporary file in the same folder, fsync, rename), then the
        progress file is removed."""
        self._f.flush()
        where: dict[int, tuple[int, int]] = {}
        with open(self.path, "rb") as f:
            f.readline()  # header
            while True:
                pos = f.tell()
                raw = f.readline()
                if not raw:
                    break
                try:
                    n = int(json.loads(raw)["line"])
                except (ValueError, KeyError, TypeError):
                    continue
                where.setdefault(n, (pos, len(raw.rstrip(b"\n"))))
            missing = [n for n in range(1, total + 1) if n not in where]
            if missing:
                raise BatchError(f"internal error: lines {missing[:10]} have no result", 1)
            fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for n in range(1, total + 1):
                        pos, size = where[n]
                        f.seek(pos)
                        out.write(f.read(size) + b"\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, output)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _fsync_dir(output.parent)
        self.close()
        self.path.unlink()
        _fsync_dir(self.path.parent)
