"""UTKFace ingestion: labels from file names, a stratified split, and packing.

UTKFace names each aligned-and-cropped face ``<age>_<gender>_<race>_<timestamp>.jpg.chip.jpg``
with gender 0 male, 1 female and race 0 White, 1 Black, 2 Asian, 3 Indian,
4 Others. The race label is called ``ethnicity`` here, the task's name.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MAX_AGE = 120
SPLITS = ("train", "validation", "test")
LABEL_COLUMNS = ["file", "age", "gender", "ethnicity", "timestamp"]
REJECT_COLUMNS = ["file", "reason"]


def parse_name(name: str) -> tuple[dict[str, int | str] | None, str]:
    """Parse a UTKFace file name into labels.

    Returns ``(labels, "")`` for a valid name and ``(None, reason)`` otherwise.
    ``name`` may include directories; only the base name is parsed. The
    timestamp is kept as text and not checked, because the official archive has
    timestamps with a trailing space, 18 digits or a missing dot before "jpg",
    and none of that affects the labels.
    """
    base = name.rsplit("/", 1)[-1]
    if not base.lower().endswith(".jpg"):
        return None, "not a .jpg file"

    fields = base.split("_")
    if len(fields) < 4:
        return None, f"expected 4 fields age_gender_race_timestamp, found {len(fields)}"
    age, gender, race = fields[:3]
    timestamp = "_".join(fields[3:]).split(".")[0].removesuffix("jpg").strip()

    if not age.isdigit() or not 0 < int(age) <= MAX_AGE:
        return None, f"age {age!r} is not a whole number from 1 to {MAX_AGE}"
    if gender not in ("0", "1"):
        return None, f"gender {gender!r} is not 0 (male) or 1 (female)"
    if race not in ("0", "1", "2", "3", "4"):
        return None, f"race {race!r} is not one of 0 to 4"

    labels = {"file": base, "age": int(age), "gender": int(gender), "ethnicity": int(race), "timestamp": timestamp}
    return labels, ""


def _is_archive(source: Path) -> bool:
    return source.is_file() and tarfile.is_tarfile(source)


def list_faces(source: Path) -> list[str]:
    """List the face image names in an archive or directory, sorted, without directories."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"UTKFace source {source} does not exist; set the config key 'utkface'")

    if _is_archive(source):
        with tarfile.open(source) as archive:
            names = [member.name.rsplit("/", 1)[-1] for member in archive if member.isfile()]
    elif source.is_dir():
        names = [path.name for path in source.rglob("*") if path.is_file()]
    else:
        raise ValueError(f"UTKFace source {source} is neither a tar archive nor a directory")

    names = [name for name in names if name.lower().endswith((".jpg", ".jpeg"))]
    if not names:
        raise ValueError(f"UTKFace source {source} contains no .jpg files")
    return sorted(names)


def read_labels(source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse every face name in ``source`` and return (labels, rejects).

    Duplicate names (the same face twice in the archive) are rejected after the
    first, so a face can never sit in two splits.
    """
    rows, rejects, seen = [], [], set()
    for name in list_faces(source):
        labels, reason = parse_name(name)
        if labels is None:
            rejects.append({"file": name, "reason": reason})
        elif name in seen:
            rejects.append({"file": name, "reason": "duplicate name"})
        else:
            seen.add(name)
            rows.append(labels)

    log.info("UTKFace %s: %d faces with valid labels, %d rejected", source, len(rows), len(rejects))
    for reject in rejects:
        log.info("rejected %s: %s", reject["file"], reject["reason"])
    return pd.DataFrame(rows, columns=LABEL_COLUMNS), pd.DataFrame(rejects, columns=REJECT_COLUMNS)


def age_groups(ages: pd.Series, bins: list[int]) -> pd.Series:
    """Return the index of each age's group; group i contains ages from bins[i-1] up to but excluding bins[i]."""
    return pd.Series(np.searchsorted(np.asarray(sorted(bins)), ages.to_numpy(), side="right"), index=ages.index)


def _strata(labels: pd.DataFrame, stratify: list[str], age_bins: list[int]) -> pd.Series:
    keys = pd.DataFrame(index=labels.index)
    for column in stratify:
        keys[column] = age_groups(labels["age"], age_bins) if column == "age_group" else labels[column]
    if keys.empty or not stratify:
        return pd.Series("all", index=labels.index)
    return keys.astype(str).agg("|".join, axis=1)


def _allocate(count: int, fractions: list[float], rng: np.random.Generator) -> list[int]:
    """Split ``count`` items into parts proportional to ``fractions`` by largest remainder.

    Ties between remainders are broken at random, so small strata do not always
    send their odd item to the same split.
    """
    exact = np.asarray(fractions) * count
    sizes = np.floor(exact).astype(int)
    remainder = exact - sizes
    order = np.lexsort((rng.random(len(fractions)), -remainder))
    for index in order[: count - sizes.sum()]:
        sizes[index] += 1
    return sizes.tolist()


def split_faces(
    labels: pd.DataFrame,
    validation: float,
    test: float,
    seed: int,
    stratify: list[str],
    age_bins: list[int],
    subset: int | None = None,
) -> pd.DataFrame:
    """Assign each face to train, validation or test, stratified, and optionally draw a subset.

    The split is drawn over all faces first and the subset afterwards, from each
    split and stratum in proportion. So a face's split never depends on
    ``subset``: a test face of a small run is a test face of the full run too.
    Returns ``labels`` (only the faces kept) with a ``split`` column, in the order of ``labels``.
    """
    rng = np.random.default_rng(seed)
    fractions = [1 - validation - test, validation, test]
    strata = _strata(labels, stratify, age_bins)

    split = pd.Series("", index=labels.index, dtype=object)
    for stratum in sorted(strata.unique()):
        members = labels.index[strata == stratum].to_numpy()
        members = members[rng.permutation(len(members))]
        start = 0
        for name, size in zip(SPLITS, _allocate(len(members), fractions, rng)):
            split[members[start : start + size]] = name
            start += size

    result = labels.assign(split=split.to_numpy())
    if subset is not None and subset < len(result):
        keep_fraction = subset / len(result)
        keys = result["split"] + "|" + strata
        kept = []
        for key in sorted(keys.unique()):
            members = result.index[keys == key].to_numpy()
            kept.append(rng.permutation(members)[: round(len(members) * keep_fraction)])
        result = result.loc[np.sort(np.concatenate(kept))]

    counts = result["split"].value_counts()
    log.info("split: %s", ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS))
    return result.reset_index(drop=True)


def _iter_sources(source: Path, names: set[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (name, JPEG bytes) for each face in ``names``, in the source's own order."""
    if _is_archive(source):
        with tarfile.open(source) as archive:
            for member in archive:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names:
                    yield name, archive.extractfile(member).read()
    else:
        for path in source.rglob("*"):
            if path.name in names and path.is_file():
                yield path.name, path.read_bytes()


def decode_face(data: bytes, name: str, image_size: int) -> np.ndarray:
    """Decode one JPEG into an RGB uint8 array of shape (image_size, image_size, 3).

    Raises ValueError naming the file when it cannot be decoded.
    """
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"UTKFace image {name} could not be decoded; the archive may be damaged, download it again")
    if image.shape[:2] != (image_size, image_size):
        # INTER_AREA averages source pixels, the standard choice for shrinking without aliasing.
        image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def pack_faces(source: Path, split: pd.DataFrame, image_size: int, images_path: Path, threads: int = 1) -> None:
    """Decode the faces listed in ``split`` into one uint8 array file, in the table's row order.

    The array is written through a memory map, so the full set (2.8 GB at
    200x200) never needs twice its size in memory.
    """
    source = Path(source)
    position = {name: index for index, name in enumerate(split["file"])}
    images = np.lib.format.open_memmap(
        images_path, mode="w+", dtype=np.uint8, shape=(len(split), image_size, image_size, 3)
    )
    filled = np.zeros(len(split), dtype=bool)

    def decode_into(item: tuple[str, bytes]) -> None:
        name, data = item
        try:
            images[position[name]] = decode_face(data, name, image_size)
        except ValueError:
            raise ValueError(
                f"UTKFace image {name} in {source} could not be decoded; replace or delete that file "
                "(or download the archive again), then rerun"
            ) from None
        filled[position[name]] = True

    # OpenCV releases the GIL while decoding, so threads scale decoding while this thread reads the archive.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for future in [pool.submit(decode_into, item) for item in _iter_sources(source, set(position))]:
            future.result()
    images.flush()

    if not filled.all():
        missing = split["file"][~filled].head(5).tolist()
        raise ValueError(
            f"{(~filled).sum()} faces of the split were not found in {source} (first: {missing}); "
            "the split was made from another copy of UTKFace, delete results/utkface and rerun"
        )
    log.info("packed %d faces at %dx%d into %s", len(split), image_size, image_size, images_path)
