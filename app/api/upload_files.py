"""The uploads folder (data_dir/uploads): files are written there whole (a `.part` file
renamed into place) once an upload passed every check, and removed again when their job
fails. What is left there that no stored document and no pending job uses (a job cut short
by a crash, a file whose ingest failed before this cleanup existed) is a failed upload: an
admin lists and clears those over the API."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

PART_AGE_S = 3600.0  # a .part file this old is a save cut short, not one in progress


def upload_folder(data_dir: Path | str) -> UploadFolder:
    root = Path(data_dir)
    return UploadFolder(root / "uploads", root / "jobs")


@dataclass(frozen=True)
class Leftover:
    name: str
    size: int
    modified_at: float
    reason: str | None  # the last job's reason for the file, when a job wrote one down

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "modified_at": self.modified_at,
                "reason": self.reason}


class UploadFolder:
    def __init__(self, folder: Path, jobs_folder: Path):
        self.folder = folder
        self.jobs_folder = jobs_folder

    def save(self, files: list[tuple[str, BinaryIO]]) -> list[Path]:
        """Writes each (name, file) whole; the folder holds either all of them or none."""
        self.folder.mkdir(parents=True, exist_ok=True)
        saved: list[Path] = []
        try:
            for name, data in files:
                saved.append(self._save_one(name, data))
        except BaseException:
            self.remove(saved)
            raise
        return saved

    def _save_one(self, name: str, data: BinaryIO) -> Path:
        final = self.folder / name
        part = self.folder / f".{uuid.uuid4().hex}.part"
        try:
            with part.open("wb") as out:
                data.seek(0)
                shutil.copyfileobj(data, out, 1 << 20)
            os.replace(part, final)  # atomic: a job reading the previous version sees it whole
        finally:
            part.unlink(missing_ok=True)
        return final

    def remove(self, paths: list[Path]) -> list[str]:
        """Removes those of `paths` that are in this folder; their names."""
        root = self.folder.resolve()
        removed = []
        for path in paths:
            if path.resolve().parent == root and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def leftovers(self, stored: set[Path], pending: set[Path]) -> list[Leftover]:
        """Files no stored document (`stored`: their sources) and no pending job uses."""
        if not self.folder.is_dir():
            return []
        reasons = self._reasons()
        keep = {p.resolve() for p in stored | pending}
        found = []
        for path in sorted(self.folder.iterdir()):
            if not path.is_file() or path.resolve() in keep:
                continue
            st = path.stat()
            if path.suffix == ".part" and time.time() - st.st_mtime < PART_AGE_S:
                continue  # another upload may be writing it now
            found.append(Leftover(path.name, st.st_size, st.st_mtime,
                                  reasons.get(str(path.resolve()))))
        return found

    def _reasons(self) -> dict[str, str]:
        """path → reason, from the jobs written down (oldest first, so the newest wins)."""
        reasons: dict[str, str] = {}
        try:
            jobs = sorted(self.jobs_folder.glob("*.json"), key=lambda f: f.stat().st_mtime)
        except OSError:
            return reasons
        for file in jobs:
            try:
                job = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            for result in job.get("results") or []:
                if result.get("status") == "failed" and result.get("path"):
                    reasons[result["path"]] = str(result.get("reason") or "failed")
            if job.get("status") == "failed":
                for path in job.get("paths") or []:
                    reasons.setdefault(path, str(job.get("error") or "the job failed"))
        return reasons
