"""Organ crop / sentence pairs read from a benchmark (or data-preparation) cache.

Cache layout, as this reader expects it (``CacheLayout`` names every key, so a change
of the writer's format is a one-line change here)::

    root/manifest.jsonl      one JSON object per case: {"case_id", "split", "shard"}
    root/<shard>             torch file: {"images": (N, 3, S, S, F) float16,
                                          "organs": [N names],
                                          "sentences": [N str, or N lists of phrasings],
                                          "labels": [N lists of finding names]}  (empty list = normal)

``data_view="whole_volume"`` (``WHOLE_VOLUME_LAYOUT``) reads the benchmark's one
whole-volume crop per case from the same shards (``whole_images`` etc.).

One item is one organ of one case: ``{"image": (3, S, S, F) as stored (float16), "text": str,
"key": int, "organ": str, "case": str}``. ``key`` identifies what the sentence means
for the false-negative handling of the losses: the normalised sentence text, or
``organ|normal`` for a normal organ (so "liver unremarkable" and "normal liver" of two
cases are not negatives of each other). With ``positives="organ_label"`` it is the
organ plus its sorted finding labels for every sample.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError


@dataclass(frozen=True)
class CacheLayout:
    manifest: str = "manifest.jsonl"
    case_id: str = "case_id"
    split: str = "split"
    shard: str = "shard"
    images: str = "images"
    organs: str = "organs"
    sentences: str = "sentences"
    labels: str = "labels"
    patient: str = "patient"
    maps: str = "lesion_maps"      # optional: where each finding lies in each crop (benchmark_data.lesion_maps)


# The benchmark's whole-volume crops (one per case, CT-CLIP-style baseline), same shards.
WHOLE_VOLUME_LAYOUT = CacheLayout(images="whole_images", organs="whole_organs",
                                  sentences="whole_sentences", labels="whole_labels", maps="")
VIEWS = {"organs": CacheLayout(), "whole_volume": WHOLE_VOLUME_LAYOUT}


def stable_hash(text: str) -> int:
    """63-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def normalise_sentence(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .")


def text_key(sentence: str, organ: str, labels: list[str], positives: str = "text") -> int:
    """Integer meaning-key of a sentence (see module docstring)."""
    if positives == "organ_label":
        return stable_hash(f"{organ}|" + "|".join(sorted(labels)))
    if not labels:
        return stable_hash(f"{organ}|normal")
    return stable_hash(normalise_sentence(sentence))


def numbered_manifest(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, entry) for every non-empty line of a ``manifest.jsonl``; InputError
    names the file and line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no manifest: not a training cache folder")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, f"line {n}: bad entry ({e})") from None
        if not isinstance(entry, dict):
            raise InputError(path, f"line {n}: bad entry (not a JSON object)")
        out.append((n, entry))
    return out


@dataclass(frozen=True)
class Item:
    shard: int
    row: int
    case: str
    organ: str


class CropDataset(torch.utils.data.Dataset):
    """All organ crops of the cases of one split (``split=None``: every case), leaving out the
    patient ``holdout`` (a leave-one-patient-out fold, ``folds.py``).

    ``augment`` (a callable on an item's {"image", "maps"} tensors, e.g.
    ``load_augment.augmentation``) changes each crop as it is read; items carry ``maps``
    (where each finding lies, ``benchmark_data.lesion_maps``) when the shards have them."""

    def __init__(self, root: str | Path, split: str | None = "train", positives: str = "text",
                 seed: int = 0, layout: CacheLayout = CacheLayout(), holdout: str | None = None,
                 augment=None):
        self.root = Path(root)
        self.layout, self.positives, self.seed, self.epoch = layout, positives, seed, 0
        self.augment = augment
        manifest = self.root / layout.manifest
        self.shards: list[Path] = []
        self.items: list[Item] = []
        self._meta: list[dict] = []
        for n, entry in numbered_manifest(manifest):
            try:
                case, shard = str(entry[layout.case_id]), entry[layout.shard]
            except (KeyError, TypeError) as e:
                raise InputError(manifest, f"line {n}: bad entry ({e})") from None
            if split is not None and entry.get(layout.split) != split:
                continue
            if holdout and entry.get(layout.patient) == holdout:
                continue
            meta = self._read_meta(self.root / shard)
            self.shards.append(self.root / shard)
            self._meta.append(meta)
            for row, organ in enumerate(meta["organs"]):
                self.items.append(Item(len(self.shards) - 1, row, case, organ))
        if not self.items:
            raise InputError(self.root, f"no organ crops for split {split!r}"
                                        + (f" without patient {holdout!r}" if holdout else ""))
        self._open: dict[int, dict] = {}

    def _read_meta(self, path: Path) -> dict:
        blob = self._load(path)
        L = self.layout
        try:
            n = blob[L.images].shape[0]
            meta = {"organs": list(blob[L.organs]), "sentences": list(blob[L.sentences]),
                    "labels": [list(x) for x in blob.get(L.labels, [[]] * n)]}
        except (KeyError, AttributeError, TypeError) as e:
            raise InputError(path, f"shard lacks {e}") from None
        if not (len(meta["organs"]) == len(meta["sentences"]) == len(meta["labels"]) == n):
            raise InputError(path, "images, organs, sentences and labels differ in length")
        return meta

    @staticmethod
    def _load(path: Path) -> dict:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError) as e:
            raise InputError(path, f"cannot read shard ({e})") from None

    def set_epoch(self, epoch: int):
        """Phrasing choice (when a crop has several sentences) depends on seed, epoch and index."""
        self.epoch = epoch

    @property
    def organs(self) -> list[str]:
        return [it.organ for it in self.items]

    @property
    def cases(self) -> list[str]:
        return [it.case for it in self.items]

    def crop_shape(self) -> tuple:
        return tuple(self._shard(0)[self.layout.images].shape[1:])

    def require_crop_shape(self, crop_size: int, frames: int):
        """InputError unless the crops are (3, crop_size, crop_size, frames)."""
        want = (3, crop_size, crop_size, frames)
        if self.crop_shape() != want:
            raise InputError(self.root, f"crops are {self.crop_shape()}, the model expects {want}")

    def _shard(self, i: int) -> dict:
        if i not in self._open:
            self._open[i] = self._load(self.shards[i])
        return self._open[i]

    def sentence(self, index: int) -> str:
        it = self.items[index]
        s = self._meta[it.shard]["sentences"][it.row]
        if isinstance(s, (list, tuple)):
            s = random.Random(f"{self.seed}/{self.epoch}/{index}").choice(list(s))
        return s

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        it = self.items[index]
        image = self._shard(it.shard)[self.layout.images][it.row].clone()  # stored dtype (float16): half the
        # bytes through the loader; the tasks make it float32 on the device
        text = self.sentence(index)
        labels = self._meta[it.shard]["labels"][it.row]
        item = {"image": image, "text": text, "organ": it.organ, "case": it.case,
                "key": text_key(text, it.organ, labels, self.positives)}
        shard = self._shard(it.shard)
        if self.layout.maps and self.layout.maps in shard:
            item["maps"] = shard[self.layout.maps][it.row].clone()
        if self.augment is not None:
            item.update(self.augment({k: item[k] for k in ("image", "maps") if k in item}, index, self.epoch))
        return item

    def __getstate__(self):  # DataLoader workers reopen the shards themselves
        state = dict(self.__dict__)
        state["_open"] = {}
        return state


def collate(items: list[dict]) -> dict:
    batch = {"image": torch.stack([x["image"] for x in items]),
             "text": [x["text"] for x in items],
             "organ": [x["organ"] for x in items],
             "case": [x["case"] for x in items],
             "key": torch.tensor([x["key"] for x in items], dtype=torch.long)}
    if all("maps" in x for x in items):
        batch["maps"] = torch.stack([x["maps"] for x in items])
    return batch


def write_tiny_cache(root: str | Path, cases: dict[str, dict], splits: dict[str, str] | None = None,
                     patients: dict[str, str] | None = None) -> Path:
    """Write a cache in the layout above (tests, examples): cases[case_id] = shard dict."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    lines = []
    for case, shard in cases.items():
        rel = f"shards/{case}.pt"
        torch.save(shard, root / rel)
        lines.append(json.dumps({"case_id": case, "split": (splits or {}).get(case, "train"), "shard": rel,
                                 "patient": (patients or {}).get(case, "P")}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root
