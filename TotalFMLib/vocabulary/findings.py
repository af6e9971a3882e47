"""Finding catalogue: which findings are scored on which organs, with their synonyms.

The built-in table is ``TotalFMLib/data/findings.csv`` (its header comment documents the
columns and the organ choices); users extend it with a CSV of the same columns, passed as
``load_findings(extra_path)`` or named by the environment variable ``TOTALFM_FINDINGS``.
Every organ entry must be a structure name or group that ``catalogue.resolve`` knows; a bad
line raises ``InputError`` naming the file and line.
"""
from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import catalogue
from ..errors import InputError
from ..results import ANY_LESION

ENV_VAR = "TOTALFM_FINDINGS"
COLUMNS = ("finding", "organs", "synonyms", "kind", "source")
REQUIRED = ("finding", "organs")


@dataclass(frozen=True)
class Finding:
    finding: str                     # canonical name
    organs: tuple[str, ...]          # structure names (groups expanded), label order
    synonyms: tuple[str, ...] = ()
    kind: str = "other"
    source: str = "user"
    organ_spec: tuple[str, ...] = () # the organs column as written (names and groups)

    @property
    def name(self) -> str:
        return self.finding

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical name first, then the synonyms."""
        return (self.finding, *self.synonyms)


def builtin_path() -> Path:
    return Path(str(resources.files("TotalFMLib") / "data" / "findings.csv"))


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(";") if p.strip()]


def _records(path: Path):
    """(line number, fields) for every record; comment and blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "finding catalogue not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "finding catalogue is not UTF-8 text") from None
    except OSError as e:
        raise InputError(path, f"cannot read the finding catalogue ({e.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        yield number, [f.strip() for f in next(csv.reader([line]))]


def _organs(entries: list[str], path: Path, number: int, name: str) -> tuple[str, ...]:
    chosen: dict[str, catalogue.Organ] = {}
    for entry in entries:
        try:
            members = catalogue.resolve([entry])
        except InputError:
            raise InputError(path, f"line {number}: unknown organ or group {entry!r} for finding "
                                   f"{name!r}; `totalfm organs` lists the structure names, groups are "
                                   f"{', '.join(catalogue.groups())}") from None
        chosen.update((o.name, o) for o in members)
    return tuple(o.name for o in sorted(chosen.values(), key=lambda o: o.label_id))


def read_findings_csv(path: str | os.PathLike) -> list[tuple[Finding, int]]:
    """Parse and check one catalogue file: [(Finding, line number)], in file order."""
    path = Path(path)
    records = _records(path)
    try:
        number, header = next(records)
    except StopIteration:
        raise InputError(path, "finding catalogue is empty (it needs the header "
                               f"{','.join(COLUMNS)})") from None
    header = [h.lower() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(path, f"line {number}: header lacks the column(s) {', '.join(missing)} "
                               f"(expected {','.join(COLUMNS)})")
    out: list[tuple[Finding, int]] = []
    seen: dict[str, int] = {}
    for number, fields in records:
        if len(fields) > len(header):
            raise InputError(path, f"line {number}: {len(fields)} fields but the header has "
                                   f"{len(header)} (quote a field that contains a comma)")
        row = dict(zip(header, fields + [""] * (len(header) - len(fields))))
        name = row["finding"]
        if not name:
            raise InputError(path, f"line {number}: empty finding name")
        if catalogue.normalise_name(name) == catalogue.normalise_name(ANY_LESION):
            raise InputError(path, f"line {number}: {ANY_LESION!r} is reserved for the per-organ lesion score")
        key = catalogue.normalise_name(name)
        if key in seen:
            raise InputError(path, f"line {number}: finding {name!r} already defined on line {seen[key]}")
        seen[key] = number
        spec = _split(row["organs"])
        if not spec:
            raise InputError(path, f"line {number}: finding {name!r} names no organ")
        synonyms = tuple(dict.fromkeys(
            s for s in _split(row.get("synonyms", "")) if catalogue.normalise_name(s) != key))
        out.append((Finding(
            finding=name, organs=_organs(spec, path, number, name), synonyms=synonyms,
            kind=row.get("kind") or "other", source=row.get("source") or "user", organ_spec=tuple(spec),
        ), number))
    return out


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[tuple[Finding, int], ...]:
    return tuple(read_findings_csv(builtin_path()))


def load_findings(extra_path: str | os.PathLike | None = None) -> tuple[Finding, ...]:
    """The built-in catalogue merged with a user's CSV (``extra_path``, else ``$TOTALFM_FINDINGS``).

    A user row adds a finding, or replaces the built-in finding of the same name. A name or
    synonym used by two findings raises ``InputError`` naming the file and line.
    """
    if extra_path is None and os.environ.get(ENV_VAR, "").strip():
        extra_path = os.environ[ENV_VAR].strip()
    entries = [(f, builtin_path(), n) for f, n in _builtin()]
    if extra_path is not None:
        user = read_findings_csv(extra_path)
        replaced = {catalogue.normalise_name(f.finding) for f, _ in user}
        entries = [e for e in entries if catalogue.normalise_name(e[0].finding) not in replaced]
        entries += [(f, Path(extra_path), n) for f, n in user]
    owner: dict[str, tuple[str, Path, int]] = {}
    for f, path, number in entries:
        for text in f.names:
            key = catalogue.normalise_name(text)
            if key in owner and owner[key][0] != f.finding:
                other, other_path, other_line = owner[key]
                raise InputError(path, f"line {number}: {text!r} of finding {f.finding!r} is already a "
                                       f"name of {other!r} ({other_path}, line {other_line})")
            owner[key] = (f.finding, path, number)
    return tuple(f for f, _, _ in entries)


def find(name_or_synonym: str, findings: tuple[Finding, ...] | list[Finding] | None = None) -> Finding:
    """The finding with this name or synonym (case and punctuation ignored)."""
    key = catalogue.normalise_name(name_or_synonym)
    for f in findings if findings is not None else load_findings():
        if any(catalogue.normalise_name(n) == key for n in f.names):
            return f
    raise InputError(None, f"unknown finding {name_or_synonym!r}; `totalfm findings` lists the known names")


def findings_for_organ(organ: str, findings: tuple[Finding, ...] | list[Finding] | None = None) -> list[Finding]:
    """Catalogue findings scored on ``organ`` (a structure name or any name ``catalogue.organ`` knows)."""
    name = catalogue.organ(organ).name
    return [f for f in (findings if findings is not None else load_findings()) if name in f.organs]
