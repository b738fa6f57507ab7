"""Download and verify the official MDM checkpoints and the HumanML3D normalisation statistics.

Google Drive files go through gdown first when it is importable (Colab preinstalls it; it gets past
Drive's confirmation page), then through urllib. urllib downloads resume with HTTP Range after an
interruption; both check size and sha256 when known, land atomically (`<file>.part` then os.replace)
and zips are unpacked safely. When every way fails the error says which page to open, what to save
where, and how to go on without the file. Default cache: $KPOP_CACHE_DIR, else
~/.cache/kpop_helpers/pretrained (in Colab pass a Drive folder so it survives the session).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "kpop-helpers/0.1"
_HTML_START = (b"<!doctype html", b"<html")
# What Drive says when it will not hand out a file right now (gdown quotes it in its exceptions).
_QUOTA_WORDS = ("too many users", "many accesses", "quota", "can't scan", "cannot scan", "virus scan")
FROM_SCRATCH = ("Or continue from scratch: set OFFICIAL_MDM = 'no' in 01_setup / BASE_MODEL = 'scratch' in "
                "02_finetune.")


class DownloadError(RuntimeError):
    """A download failed (offline, server error, Google Drive quota page); the message says how to do it by hand."""


class QuotaPageError(DownloadError):
    """The server sent a web page instead of the file (Google Drive's quota or virus-scan confirmation page)."""


class GdownUnavailable(DownloadError):
    """gdown is not installed: the urllib path is used instead."""


def gdrive_url(file_id: str) -> str:
    """Direct-download URL of a public Google Drive file (skips the virus-scan page for large files)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def gdrive_page(file_id: str) -> str:
    """The Google Drive page a person opens to download by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


def _check_humanml_stat(path: Path) -> None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable .npy ({exc})", path=path, expected="a HumanML3D Mean.npy/Std.npy") from exc
    if arr.shape != (FEATURE_DIM,) or not np.all(np.isfinite(arr)):
        raise DataError(f"shape {arr.shape}, finite={bool(np.all(np.isfinite(arr)))}", path=path,
                        expected=f"{FEATURE_DIM} finite values (HumanML3D feature statistics)")


@dataclass(frozen=True)
class Asset:
    """One downloadable file; a zip is unpacked into the cache and must then provide `provides`."""

    name: str
    url: str | None
    filename: str
    description: str
    page: str
    sha256: str | None = None
    size: int | None = None
    extract: bool = False
    provides: tuple[str, ...] = ()
    # sha256 of unpacked files as reported by third parties: a mismatch only warns.
    reported_sha256: dict[str, str] = field(default_factory=dict)
    validate: Callable[[Path], None] | None = None
    gdrive_id: str | None = None  # set for Google Drive files: gdown is tried before `url`
    way_on: str = ""  # what a user can do without this file, appended to the final error


_MDM_REPO = "https://github.com/GuyTevet/motion-diffusion-model#3-download-the-pretrained-models"
_HUMANML_RAW = "https://raw.githubusercontent.com/EricGuo5513/HumanML3D/main/HumanML3D/"

# Google Drive ids from the MDM README. Sizes and hashes of the zips are not published, so they are
# not checked; zips are verified by their content (the checkpoint and args.json must be inside).
ASSETS: dict[str, Asset] = {
    "humanml_trans_enc_512": Asset(
        name="humanml_trans_enc_512",
        url=gdrive_url("1PE0PK8e5a5j-7-Xhs5YET5U5pGh0c821"),
        filename="humanml_trans_enc_512.zip",
        description="MDM paper model, HumanML3D, trans_enc 512, 1000 diffusion steps (model000475000.pt)",
        page=gdrive_page("1PE0PK8e5a5j-7-Xhs5YET5U5pGh0c821"),
        gdrive_id="1PE0PK8e5a5j-7-Xhs5YET5U5pGh0c821",
        way_on=FROM_SCRATCH,
        extract=True,
        provides=("humanml_trans_enc_512/model000475000.pt", "humanml_trans_enc_512/args.json"),
    ),
    "humanml-encoder-512-50steps": Asset(
        name="humanml-encoder-512-50steps",
        url=gdrive_url("1cfadR1eZ116TIdXK7qDX1RugAerEiJXr"),
        filename="humanml_enc_512_50steps.zip",
        description="MDM 50-step model, HumanML3D, trans_enc 512, --mask_frames --use_ema (model000750000.pt)",
        page=gdrive_page("1cfadR1eZ116TIdXK7qDX1RugAerEiJXr"),
        gdrive_id="1cfadR1eZ116TIdXK7qDX1RugAerEiJXr",
        way_on=FROM_SCRATCH,
        extract=True,
        provides=("humanml_enc_512_50steps/model000750000.pt", "humanml_enc_512_50steps/args.json"),
        reported_sha256={"humanml_enc_512_50steps/model000750000.pt":
                         "0fbdc8547c8f262b8838645586790b55f983d90db3bb7ed58e4b5d49429587ca"},
    ),
    "humanml3d_mean": Asset(
        name="humanml3d_mean", url=_HUMANML_RAW + "Mean.npy", filename="humanml3d/Mean.npy",
        description="HumanML3D feature mean (263,), used to normalise MDM inputs",
        page="https://github.com/EricGuo5513/HumanML3D/tree/main/HumanML3D", validate=_check_humanml_stat,
    ),
    "humanml3d_std": Asset(
        name="humanml3d_std", url=_HUMANML_RAW + "Std.npy", filename="humanml3d/Std.npy",
        description="HumanML3D feature standard deviation (263,)",
        page="https://github.com/EricGuo5513/HumanML3D/tree/main/HumanML3D", validate=_check_humanml_stat,
    ),
}
ALIASES = {"humanml-encoder-512": "humanml_trans_enc_512", "humanml_enc_512_50steps": "humanml-encoder-512-50steps"}


def default_cache_dir() -> Path:
    """$KPOP_CACHE_DIR, else ~/.cache/kpop_helpers/pretrained."""
    env = os.environ.get("KPOP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kpop_helpers" / "pretrained"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    from kpop_helpers.utils import sha256_file

    return sha256_file(Path(path))


def _content_range_total(header: str | None) -> int | None:
    match = re.match(r"bytes\s+\d+-\d+/(\d+)", header or "")
    return int(match.group(1)) if match else None


def _stream_once(url: str, part: Path, timeout: float, progress: bool, label: str) -> int | None:
    """One request appending to `part` (Range from its size); returns the expected total size if known."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part is already complete
            return _content_range_total(exc.headers.get("Content-Range")) or offset
        raise
    with response:
        status = response.getcode() or 200
        if offset and status != 206:  # server ignored Range: start over
            offset = 0
        content_type = response.headers.get("Content-Type", "") or ""
        first = response.read(_CHUNK)
        # sniff only a body that starts at byte 0: a resumed range is the middle of the file
        if not url.endswith((".html", ".htm")) and (content_type.startswith("text/html")
                                                     or (offset == 0 and _is_html(first))):
            raise QuotaPageError(f"{url} answered with a web page instead of the file (for Google Drive: its "
                                 "download-quota or virus-scan confirmation page)")
        length = response.headers.get("Content-Length")
        total = _content_range_total(response.headers.get("Content-Range")) if status == 206 else None
        if total is None and length is not None:
            total = offset + int(length)
        with open(part, "ab" if offset else "wb") as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                            desc=label, disable=not progress, leave=False) as bar:
            block = first
            while block:
                fh.write(block)
                bar.update(len(block))
                block = response.read(_CHUNK)
            fh.flush()
            os.fsync(fh.fileno())
    return total


def download_file(url: str, dest: str | Path, *, sha256: str | None = None, size: int | None = None,
                  retries: int = 5, timeout: float = 60.0, backoff: float = 2.0, progress: bool = True,
                  manual_hint: str | None = None) -> Path:
    """Download `url` to `dest` atomically, resuming `<dest>.part` with HTTP Range; verify size and sha256."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            total = _stream_once(url, part, timeout, progress, dest.name)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403, 404, 410):
                break  # retrying will not help
            logger.info("download of %s interrupted (%s); retry %d/%d", url, exc, attempt + 1, retries)
            time.sleep(backoff * attempt)
            continue
        have = part.stat().st_size
        expected = size if size is not None else total
        if expected is not None and have < expected:
            last_error = DownloadError(f"got {have} of {expected} bytes")
            logger.info("download of %s stopped at %d/%d bytes; resuming", url, have, expected)
            time.sleep(backoff * attempt)
            continue
        _verify(part, url, sha256, size)
        os.replace(part, dest)
        return dest
    hint = manual_hint if manual_hint is not None else f"Download {url} by hand and put it at {dest}."
    raise DownloadError(f"could not download {url} ({last_error}). {hint + ' ' if hint else ''}The partial "
                        f"file {part} is kept; running again resumes it.")


def _verify(part: Path, url: str, sha256: str | None, size: int | None) -> None:
    have = part.stat().st_size
    if size is not None and have != size:
        part.unlink(missing_ok=True)
        raise DataError(f"downloaded {have} bytes", path=url, expected=f"{size} bytes")
    if sha256 is not None:
        digest = sha256_of(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DataError(f"sha256 {digest} does not match (corrupt or replaced file; deleted)", path=url,
                            expected=f"sha256 {sha256}")


def _is_html(head: bytes) -> bool:
    return head.lstrip()[:64].lower().startswith(_HTML_START)


def _manual_hint(asset: Asset, cache: Path) -> str:
    where = cache / asset.filename
    text = (f"Download '{asset.name}' by hand: open {asset.page}, download {where.name} and put it in the folder "
            f"{where.parent} (so that it is {where}")
    if asset.extract:
        inside = ", ".join(str(cache / p) for p in asset.provides)
        text += f"; or unzip it there so that {inside} exist"
    text += "), then run again."
    known = []
    if asset.size is not None:
        known.append(f"{asset.size} bytes")
    if asset.sha256:
        known.append(f"sha256 {asset.sha256}")
    return text + (f" Expected: {', '.join(known)}." if known else "")


def _gdown_download(file_id: str, output: Path, progress: bool) -> None:
    """Fetch a Google Drive file with gdown into `output`; GdownUnavailable when gdown is not installed."""
    try:
        import gdown
    except ImportError as exc:
        raise GdownUnavailable("not installed") from exc
    if not gdown.download(id=file_id, output=str(output), quiet=not progress):
        raise DownloadError("returned no file")


def _via_gdown(asset: Asset, dest: Path, progress: bool) -> Path:
    """gdown into `<dest>.part`, then the same checks and atomic rename as download_file."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _gdown_download(str(asset.gdrive_id), part, progress)
    except DownloadError:
        raise
    except Exception as exc:  # gdown raises its own errors (FileURLRetrievalError, requests errors, ...)
        quota = any(word in str(exc).lower() for word in _QUOTA_WORDS)
        raise (QuotaPageError if quota else DownloadError)(f"{type(exc).__name__}: {exc}") from exc
    finally:  # gdown writes a temporary '<output>XXXXtmp' beside `output` and leaves it behind when it fails
        for leftover in part.parent.glob(f"{part.name}*tmp"):
            leftover.unlink(missing_ok=True)
    if not part.is_file():
        raise DownloadError(f"reported success but wrote no {part}")
    with open(part, "rb") as fh:
        if _is_html(fh.read(512)):
            part.unlink()
            raise QuotaPageError("saved a web page instead of the file (Drive's download-quota or virus-scan "
                                 "confirmation page)")
    _verify(part, gdrive_page(str(asset.gdrive_id)), asset.sha256, asset.size)
    os.replace(part, dest)
    return dest


def _download_asset(asset: Asset, cache: Path, dest: Path, download_kw: dict[str, Any]) -> None:
    """gdown (Drive files), then urllib; one DownloadError with the manual steps when both fail."""
    failures: list[str] = []
    quota = False
    if asset.gdrive_id:
        try:
            _via_gdown(asset, dest, bool(download_kw.get("progress", True)))
            return
        except DownloadError as exc:
            logger.info("gdown could not fetch %s (%s); trying a direct download", asset.name, exc)
            failures.append(f"gdown: {exc}")
            quota |= isinstance(exc, QuotaPageError)
    if asset.url is not None:
        try:
            download_file(asset.url, dest, sha256=asset.sha256, size=asset.size, manual_hint="", **download_kw)
            return
        except DownloadError as exc:
            failures.append(f"direct download: {exc}")
            quota |= isinstance(exc, QuotaPageError)
    else:
        failures.append("direct download: no download URL is recorded")
    text = f"could not download '{asset.name}' ({asset.description}).\n" + "".join(f"  - {f}\n" for f in failures)
    if quota:
        text += ("Google Drive answered with its download-quota / virus-scan confirmation page (\"Too many users "
                 "have viewed or downloaded this file recently\" or \"Google Drive can't scan this file for "
                 "viruses\"), not with the file: the automatic download is refused for now; downloading it in the "
                 "browser usually still works, or try again later.\n")
    text += _manual_hint(asset, cache) + (f"\n{asset.way_on}" if asset.way_on else "")
    raise (QuotaPageError if quota else DownloadError)(text)


def extract_zip(archive: Path, target: Path) -> list[Path]:
    """Unpack a zip into `target`, refusing entries that escape it; each top-level entry lands atomically."""
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".extract-{archive.stem}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            root = staging.resolve()
            for member in zf.namelist():
                resolved = (staging / member).resolve()
                if resolved != root and root not in resolved.parents:
                    raise DataError(f"entry {member!r} points outside the extraction folder", path=archive,
                                    expected="a zip with relative paths only")
            zf.extractall(staging)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"not a valid zip ({exc})", path=archive, expected="a complete .zip download") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    placed = []
    for entry in sorted(staging.iterdir()):
        final = target / entry.name
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(entry, final)
        placed.append(final)
    staging.rmdir()
    return placed


def _resolve(name_or_asset: str | Asset) -> Asset:
    if isinstance(name_or_asset, Asset):
        return name_or_asset
    name = ALIASES.get(name_or_asset, name_or_asset)
    if name not in ASSETS:
        raise DataError(f"unknown asset {name_or_asset!r}", field="name", expected=f"one of {sorted(ASSETS)}")
    return ASSETS[name]


def fetch_asset(name_or_asset: str | Asset, cache_dir: str | Path | None = None, *, force: bool = False,
                keep_archive: bool = False, **download_kw: Any) -> Path:
    """Make an asset available in the cache; returns the file (or, for zips, the cache folder)."""
    asset = _resolve(name_or_asset)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = cache / asset.filename
    if asset.extract:
        if not force and asset.provides and all((cache / p).exists() for p in asset.provides):
            return cache
    elif dest.is_file() and not force:
        _validate(asset, dest)
        return dest
    if force or not dest.is_file():
        _download_asset(asset, cache, dest, download_kw)
    if not asset.extract:
        _validate(asset, dest)
        return dest
    placed = extract_zip(dest, cache)
    absent = [p for p in asset.provides if not (cache / p).exists()]
    if absent:
        raise DataError(f"the archive lacks {absent}; it unpacked {[p.name for p in placed]}", path=dest,
                        expected=f"a zip providing {list(asset.provides)}")
    for rel, digest in asset.reported_sha256.items():
        if sha256_of(cache / rel) != digest:
            logger.warning("%s: sha256 differs from the value reported for the public release (%s)", cache / rel,
                           digest)
    if not keep_archive:
        dest.unlink(missing_ok=True)
    return cache


def _validate(asset: Asset, path: Path) -> None:
    if asset.validate is not None:
        asset.validate(path)


def fetch_mdm_checkpoint(name: str = "humanml_trans_enc_512", cache_dir: str | Path | None = None,
                         **kw: Any) -> Path:
    """Path of an official MDM checkpoint (.pt, with its args.json beside it), downloading it if needed."""
    asset = _resolve(name)
    cache = fetch_asset(asset, cache_dir, **kw)
    return cache / next(p for p in asset.provides if p.endswith(".pt"))


def fetch_humanml_stats(cache_dir: str | Path | None = None, **kw: Any) -> Path:
    """Folder holding HumanML3D Mean.npy and Std.npy (checked: 263 finite values each)."""
    mean = fetch_asset("humanml3d_mean", cache_dir, **kw)
    fetch_asset("humanml3d_std", cache_dir, **kw)
    return mean.parent


def load_pretrained_mdm(name: str = "humanml_trans_enc_512", cache_dir: str | Path | None = None, *,
                        device: str = "cpu", with_stats: bool = True, use_ema: bool | None = None) -> Any:
    """Download (if needed) and load an official MDM, with the HumanML3D stats attached as `model.stats`."""
    from kpop_helpers.model.load import load_mdm

    model = load_mdm(fetch_mdm_checkpoint(name, cache_dir), use_ema=use_ema, device=device)
    if with_stats:
        from kpop_helpers.motion.stats import MotionStats

        model.stats = MotionStats.load(fetch_humanml_stats(cache_dir))
    return model
